// The `tcpspan events` command as a user runs it: a process, JSON lines, a summary on exit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { runClient, startServer } from './support/tcp.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

function startEvents(args: string[]): Promise<ReadyProcess> {
  return spawnUntilReady(process.execPath, [MAIN, 'events', ...args], { ready: 'capturing' });
}

describe('tcpspan events', () => {
  it('should print one JSON object per event and the loss counters on SIGINT', async () => {
    const server = await startServer(4, { reply: 2 });
    const ev = await startEvents(['--port', String(server.port)]);
    const client = await runClient('127.0.0.1', server.port, { send: 4, expect: 2 });
    await new Promise((r) => setTimeout(r, 200));
    const code = await ev.stop('SIGINT');
    await server.close();
    assert.equal(code, 0);
    const lines = ev.stdout().trim().split('\n').map((l) => JSON.parse(l) as Record<string, any>);
    assert.equal(lines.length, 4, 'an Open and a Close record for each end');
    const established = lines.find((l) => l['kind'] === 'open' && l['local'].port === client.localPort)!;
    assert.deepEqual(Object.keys(established).sort(), ['cgroup_id', 'comm', 'family', 'isn', 'key', 'kind', 'local', 'netns', 'pid', 'remote', 'start_ns', 'state', 'tcp', 'time', 'transitions', 'ts_ns'].sort());
    assert.deepEqual({ kind: established['kind'], family: established['family'], local: established['local'], remote: established['remote'], state: established['state'], pid: established['pid'], comm: established['comm'] },
      { kind: 'open', family: 'ipv4', local: { address: '127.0.0.1', port: client.localPort }, remote: { address: '127.0.0.1', port: server.port }, state: 'ESTABLISHED', pid: client.pid, comm: 'node' });
    const closed = lines.find((l) => l['kind'] === 'close' && l['local'].port === client.localPort)!;
    assert.deepEqual((closed['transitions'] as { from: string; to: string }[]).map((t) => `${t.from}>${t.to}`),
      ['CLOSE>SYN_SENT', 'SYN_SENT>ESTABLISHED', 'ESTABLISHED>FIN_WAIT1', 'FIN_WAIT1>FIN_WAIT2', 'FIN_WAIT2>CLOSE']);
    assert.equal(closed['start_ns'], closed['transitions'][0].ts_ns);
    assert.ok(Math.abs(Date.parse(established['time']) - Date.now()) < 10_000, 'time is wall-clock time');
    const summary = JSON.parse(ev.stderr().trim().split('\n').pop()!).tcpspan_events_summary;
    assert.deepEqual(summary, { submitted: 4, received: 4, lost: { ringbuf_full: 0, recursion_miss: 0, in_transit: 0 }, untracked_sockets: 0, syn_times_not_recorded: 0, handler_errors: 0 });
  });

  it('should refuse a bad flag value with one line naming it, before attaching anything', async () => {
    const child = spawn(process.execPath, [MAIN, 'events', '--port', '70000'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2);
    assert.equal(err, "tcpspan: invalid port '70000': expected a number from 1 to 65535\n");
  });
});
