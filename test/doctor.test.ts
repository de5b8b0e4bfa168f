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

  it('should report the missing privileges, not a kernel feature, and exit non-zero as an unprivileged user', async () => {
    const { code, lines } = await doctor(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', '--bounding-set=-all']);
    assert.equal(code, 1);
    const priv = lines.find((l) => l.check === 'privileges')!;
    assert.equal(priv.status, 'fail');
    assert.equal(priv.detail, 'uid 65534 lacks CAP_BPF and CAP_PERFMON, without which tcpspan cannot load its BPF programs: ' +
      'run as root (sudo bin/tcpspan ...) or grant CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN');
    assert.equal(lines.find((l) => l.check === 'ring buffer')?.detail, 'not checked: the kernel refuses BPF probes without the capabilities above');
    assert.equal(lines.find((l) => l.check === 'load and attach'), undefined, 'no attach attempt without the capabilities');
    assert.ok(!lines.some((l) => /Linux 5\.8/.test(l.detail)), JSON.stringify(lines));
  });

  it('should pass with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN alone, never asking for CAP_SYS_ADMIN', async () => {
    const caps = '+bpf,+perfmon,+net_admin';
    const { code, lines } = await doctor(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', `--inh-caps=${caps}`, `--ambient-caps=${caps}`]);
    assert.equal(code, 0, JSON.stringify(lines));
    assert.deepEqual(lines.find((l) => l.check === 'privileges'), { check: 'privileges', status: 'ok', detail: 'uid 65534 with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN' });
    assert.equal(lines.find((l) => l.check === 'cgroup sock_ops (SYN arrival)')?.status, 'ok');
    assert.ok(!lines.some((l) => /SYS_ADMIN/.test(l.detail)), JSON.stringify(lines));
  });

  it('should warn that SYN timing is off without CAP_NET_ADMIN, and pass', async () => {
    const caps = '+bpf,+perfmon';
    const { code, lines } = await doctor(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', `--inh-caps=${caps}`, `--ambient-caps=${caps}`]);
    assert.equal(code, 0, JSON.stringify(lines));
    const priv = lines.find((l) => l.check === 'privileges')!;
    assert.equal(priv.status, 'warn');
    assert.match(priv.detail, /but not CAP_NET_ADMIN: capture runs; SYN timing is off \(server spans .*\); SYN accounting and SYN flood detection are off/);
    assert.equal(lines.find((l) => l.check === 'sock:inet_sock_set_state')?.status, 'ok');
    assert.equal(lines.filter((l) => /CAP_NET_ADMIN/.test(l.detail)).length, 1, 'said once');
  });
});
