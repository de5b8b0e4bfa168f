import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

async function doctor(prefix: string[]): Promise<{ code: number; lines: { check: string; status: string; detail: string }[] }> {
  const argv = [...prefix, process.execPath, MAIN, 'doctor', '--json'];
  try {
    const { stdout } = await run(argv[0]!, argv.slice(1));
    return { code: 0, lines: stdout.trim().split('\n').map((l) => JSON.parse(l)) };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, lines: e.stdout.trim().split('\n').map((l) => JSON.parse(l)) };
  }
}

describe('tcpspan doctor', () => {
  it('should pass every check as root and attach every program', async () => {
    const { code, lines } = await doctor([]);
    assert.deepEqual(lines.filter((l) => l.status === 'fail'), []);
    assert.equal(code, 0);
    for (const hook of ['sock:inet_sock_set_state', 'tcp:tcp_retransmit_skb', 'tcp:tcp_probe', 'tcp:tcp_receive_reset', 'tcp:tcp_send_reset', 'sock:inet_sk_error_report']) {
      assert.equal(lines.find((l) => l.check === hook)?.status, 'ok', hook);
    }
    assert.equal(lines.find((l) => l.check === 'tracefs')?.status, 'ok');
  });

  it('should report the missing privilege and exit non-zero as an unprivileged user', async () => {
    const { code, lines } = await doctor(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all']);
    assert.equal(code, 1);
    const priv = lines.find((l) => l.check === 'privileges')!;
    assert.equal(priv.status, 'fail');
    assert.match(priv.detail, /^uid 65534 lacks CAP_NET_ADMIN, CAP_SYS_ADMIN, CAP_PERFMON, CAP_BPF: run as root/);
    const attach = lines.find((l) => l.check === 'load and attach');
    assert.equal(attach?.status, 'fail');
    assert.match(attach!.detail, /Operation not permitted; run as root, or grant CAP_BPF/);
  });
});
