// Capabilities: what each missing one disables, said in one line. `tcpspan run` as a non-root
// user with each subset of CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (and CAP_SYS_ADMIN alone).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { capturePrivileges, readCapabilities } from '../src/capture/capabilities.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

/** /proc/self/status text with exactly these capability bits effective. */
function status(...bits: number[]): string {
  const eff = bits.reduce((m, b) => m | (1n << BigInt(b)), 0n);
  return `Name:\tnode\nCapEff:\t${eff.toString(16).padStart(16, '0')}\n`;
}
const BPF = 39, PERFMON = 38, NET_ADMIN = 12, SYS_ADMIN = 21;

describe('capabilities', function () {
  this.timeout(60_000);

  describe('capturePrivileges', () => {
    it('should need CAP_BPF and CAP_PERFMON, and take CAP_SYS_ADMIN in their place', () => {
      assert.equal(capturePrivileges(readCapabilities(status(PERFMON, NET_ADMIN), 1000), { synTiming: true }).fatal,
        'uid 1000 lacks CAP_BPF, without which tcpspan cannot load its BPF programs: run as root (sudo bin/tcpspan ...) or grant them (setcap, or cap_add in a container)');
      assert.match(capturePrivileges(readCapabilities(status(), 1000), { synTiming: true }).fatal!, /^uid 1000 lacks CAP_BPF and CAP_PERFMON,/);
      assert.deepEqual(capturePrivileges(readCapabilities(status(SYS_ADMIN, NET_ADMIN), 1000), { synTiming: true, detect: true }), { synTiming: true, detect: true, warnings: [] });
      assert.deepEqual(capturePrivileges(readCapabilities(status(BPF, PERFMON, NET_ADMIN), 0), { synTiming: true }), { synTiming: true, detect: false, warnings: [] });
    });

    it('should switch SYN timing and SYN accounting off without CAP_NET_ADMIN and say so in one line, or not at all when they were off', () => {
      const p = capturePrivileges(readCapabilities(status(BPF, PERFMON), 1000), { synTiming: true, detect: true });
      assert.equal(p.fatal, undefined);
      assert.equal(p.synTiming, false);
      assert.equal(p.detect, false);
      assert.equal(p.warnings.length, 1);
      assert.match(p.warnings[0]!, /^CAP_NET_ADMIN is missing: SYN timing is off .*; SYN accounting and SYN flood detection are off/);
      assert.deepEqual(capturePrivileges(readCapabilities(status(BPF, PERFMON), 1000), { synTiming: false }), { synTiming: false, detect: false, warnings: [] });
    });

    it('should require CAP_NET_ADMIN for what asks for it explicitly', () => {
      assert.match(capturePrivileges(readCapabilities(status(BPF, PERFMON), 1000), { synTiming: true, needsNetAdmin: 'inspect.traceparent' }).fatal!,
        /^uid 1000 lacks CAP_NET_ADMIN \(for inspect\.traceparent\), without which/);
    });
  });

  describe('tcpspan run as uid 65534', () => {
    /** Runs `tcpspan run` with these capabilities until it is running (then SIGTERM) or exits. */
    async function runWith(caps: string[]): Promise<{ code: number | null; lines: string[] }> {
      const set = caps.map((c) => `+${c}`).join(',');
      const priv = ['--reuid=65534', '--regid=65534', '--clear-groups',
        ...(caps.length ? [`--inh-caps=${set}`, `--ambient-caps=${set}`] : ['--inh-caps=-all', '--bounding-set=-all'])];
      const child = spawn('setpriv', [...priv, process.execPath, MAIN, 'run', '--port', '9'],
        { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env['PATH'] ?? '' } });
      let err = '';
      let stopped = false;
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
        // once: a second SIGTERM during shutdown ends the process at once
        if (!stopped && err.includes('running:')) {
          stopped = true;
          child.kill('SIGTERM');
        }
      });
      const [code] = (await once(child, 'exit')) as [number | null];
      return { code, lines: err.trim().split('\n') };
    }

    const fatal: [string[], string][] = [
      [[], 'CAP_BPF and CAP_PERFMON'],
      [['bpf'], 'CAP_PERFMON'],
      [['perfmon', 'net_admin'], 'CAP_BPF'],
      [['net_admin'], 'CAP_BPF and CAP_PERFMON'],
    ];
    for (const [caps, missing] of fatal) {
      it(`should refuse with one line naming ${missing} when it has ${caps.join(', ') || 'none'}`, async () => {
        const { code, lines } = await runWith(caps);
        assert.equal(code, 1);
        assert.deepEqual(lines, [`tcpspan: privileges: uid 65534 lacks ${missing}, without which tcpspan cannot load its BPF programs: ` +
          'run as root (sudo bin/tcpspan ...) or grant them (setcap, or cap_add in a container)']);
      });
    }

    it('should run every program with CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN in place of the first two), ' +
      'and all but the cgroup ones without CAP_NET_ADMIN, saying so in one line', async () => {
      const attached = (line: string | undefined): number => Number(/^tcpspan: running: (\d+) programs attached/.exec(line ?? '')?.[1] ?? NaN);
      const all = await runWith(['bpf', 'perfmon', 'net_admin']);
      assert.equal(all.code, 0, all.lines.join('\n'));
      const running = (ls: string[]): string | undefined => ls.find((l) => l.startsWith('tcpspan: running:'));
      const n = attached(running(all.lines));
      assert.ok(n >= 9, all.lines.join('\n'));
      // the accept programs read their ids from tracefs, root's only: one line says so and names the fix
      for (const l of all.lines.filter((x) => x.includes('warning'))) assert.match(l, /syscalls:sys_exit_accept4 .*tracefs is readable by root only/, l);
      const sys = await runWith(['sys_admin', 'net_admin']);
      assert.equal(attached(running(sys.lines)), n, sys.lines.join('\n'));

      const { code, lines } = await runWith(['bpf', 'perfmon']);
      assert.equal(code, 0, lines.join('\n'));
      assert.equal(lines.filter((l) => l.includes('CAP_NET_ADMIN')).length, 1, lines.join('\n'));
      assert.match(lines[0]!, /^tcpspan: warning: CAP_NET_ADMIN is missing: SYN timing is off/);
      // the cgroup programs: sock_ops (SYN timing) and, with detect on (the default), SYN accounting
      assert.equal(attached(lines.find((l) => l.startsWith('tcpspan: running:'))), n - 2, lines.join('\n'));
    });
  });
});
