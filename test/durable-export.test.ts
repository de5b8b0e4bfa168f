// Durable export end to end: `tcpspan run` as a process with export.spoolDir, real connections, and
// a real OTLP gRPC receiver that is away at first and comes up later on the port tcpspan exports to.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';
import { closedPort, connectMany, startServer, type TestServer } from './support/tcp.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';
import { inspectSpool } from '../src/export/span-spool.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

/** `tcpspan run` exporting to `endpoint` with the spool in `spool` (retries at most 2 s apart, so a returning collector is seen soon). */
function startRun(port: number, endpoint: string, spool: string, dir: string): Promise<ReadyProcess> {
  const config = path.join(dir, 'config.json');
  fs.writeFileSync(config, JSON.stringify({ export: { batch: { retryMaxDelayMs: 2000 } } }));
  return spawnUntilReady(process.execPath, [MAIN, 'run', '--config', config, '--port', String(port), '--otlp-endpoint', endpoint, '--spool-dir', spool], {
    ready: 'running:',
    env: { PATH: process.env['PATH'] ?? '', OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRICS_EXPORTER: 'none' },
  });
}

async function until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const stoppedLine = (run: ReadyProcess): string => run.stderr().split('\n').find((l) => l.startsWith('tcpspan: stopped:')) ?? run.stderr();

/** Each client port's two ends, as the receiver holds them: every one must be there exactly once. */
function assertEachOnce(receiver: OtlpReceiver, clientPorts: number[], serverPort: number): void {
  const spans = receiver.spans();
  const ends = spans.map((s) => (s.kindName === 'SPAN_KIND_CLIENT' ? `c${s.attributes['network.local.port']}` : `s${s.attributes['network.peer.port']}`));
  const want = clientPorts.flatMap((p) => [`c${p}`, `s${p}`]);
  assert.deepEqual([...ends].sort(), [...want].sort(), 'every connection end once, none twice');
  assert.ok(spans.every((s) => s.attributes['network.local.port'] === serverPort || s.attributes['network.peer.port'] === serverPort));
}

describe('durable export (export.spoolDir)', function () {
  this.timeout(150_000);
  let receiver: OtlpReceiver | undefined;
  let server: TestServer | undefined;
  const runs: ReadyProcess[] = [];
  let dir: string;

  beforeEach(() => { dir = fs.mkdtempSync(path.join(tmpdir(), 'tcpspan-durable-')); });
  afterEach(async () => {
    for (const r of runs.splice(0)) if (r.child.exitCode === null && r.child.signalCode === null) await r.stop('SIGKILL');
    await server?.close();
    await receiver?.close();
    server = undefined; receiver = undefined;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('should deliver every span once when the collector is away for 30 s, then comes', async () => {
    const collectorPort = await closedPort(4);
    const endpoint = `http://127.0.0.1:${collectorPort}`;
    const spool = path.join(dir, 'spool');
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    const run = await startRun(server.port, endpoint, spool, dir);
    runs.push(run);
    const t0 = Date.now();
    const ports = await connectMany(4, server.port, 20);
    await new Promise((r) => setTimeout(r, 15_000 - (Date.now() - t0)));
    ports.push(...await connectMany(4, server.port, 20)); // while the collector is still away
    await until(() => inspectSpool(spool).records === 80, 10_000, 'all 80 spans in the spool');
    await new Promise((r) => setTimeout(r, 30_000 - (Date.now() - t0)));

    receiver = await startOtlpReceiver({ port: collectorPort });
    await receiver.waitForSpans(80, 20_000);
    assert.equal(await run.stop(), 0);
    assertEachOnce(receiver, ports, server.port);
    const line = stoppedLine(run);
    assert.match(line, / 80 spans \(otlp 80\); /, line);
    assert.match(line, /; spans dropped: none; spool otlp: 80 written, 0 found at start, 0 left \(0 bytes\)$/, line);
    assert.match(run.stderr(), /otlp: export failed \(14 UNAVAILABLE: .*\); spooling to .*spool and retrying until the collector takes them\n/);
    assert.match(run.stderr(), /otlp: export recovered after \d+ failed call\(s\)\n/);
    assert.deepEqual(fs.readdirSync(spool).filter((f) => f.endsWith('.seg')), [], 'the spool is empty on disk too');
  });

  it('should refuse a spool path that is not a directory with one line and exit status 2, before attaching anything', async () => {
    const file = path.join(dir, 'plain');
    fs.writeFileSync(file, '');
    const child = spawn(process.execPath, [MAIN, 'run', '--otlp-endpoint', 'http://127.0.0.1:4317', '--spool-dir', file],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '' } });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2, err);
    assert.equal(err, `tcpspan: config: export.spoolDir = ${JSON.stringify(file)} (from --spool-dir): it is not a directory; name a directory (it is created when missing)\n`);
  });

  for (const damage of ['none', 'a truncated tail and a file that is not a segment'] as const) {
    it(`should send once, after a SIGKILL while the collector was away, the spans it had spooled (damage: ${damage})`, async () => {
      const collectorPort = await closedPort(4);
      const endpoint = `http://127.0.0.1:${collectorPort}`;
      const spool = path.join(dir, 'spool');
      server = await startServer(4, { reply: 3, closeDelayMs: 1 });
      const first = await startRun(server.port, endpoint, spool, dir);
      runs.push(first);
      const ports = await connectMany(4, server.port, 30);
      await until(() => inspectSpool(spool).records === 60, 10_000, 'all 60 spans in the spool');
      await first.stop('SIGKILL');
      assert.ok(!first.stderr().includes('stopped:'), 'killed, not stopped');

      let lost = 0;
      if (damage !== 'none') {
        // the last record cut short, as a power loss mid-write leaves it; and a stray file
        const seg = fs.readdirSync(spool).filter((f) => f.endsWith('.seg')).sort().at(-1)!;
        const file = path.join(spool, seg);
        fs.truncateSync(file, fs.statSync(file).size - 10);
        fs.writeFileSync(path.join(spool, '000000000000.seg'), 'garbage');
        lost = 1;
      }

      receiver = await startOtlpReceiver({ port: collectorPort });
      const second = await startRun(server.port, endpoint, spool, dir);
      runs.push(second);
      await receiver.waitForSpans(60 - lost, 15_000);
      await new Promise((r) => setTimeout(r, 300)); // nothing more comes
      assert.equal(await second.stop(), 0);
      const line = stoppedLine(second);
      assert.match(line, new RegExp(` 0 spans \\(otlp ${60 - lost}\\); `), line);
      if (damage === 'none') {
        assertEachOnce(receiver, ports, server.port);
        assert.match(line, /; spans dropped: none; spool otlp: 0 written, 60 found at start, 0 left \(0 bytes\)$/, line);
      } else {
        // the cut record and the stray file: each counted, the rest delivered once
        const spans = receiver.spans();
        assert.equal(spans.length, 59);
        assert.equal(new Set(spans.map((s) => s.spanId)).size, 59, 'none twice');
        assert.match(line, /; spans dropped: otlp:spool_corrupt 2; spool otlp: 0 written, 61 found at start, 0 left \(0 bytes\)$/, line);
        assert.match(second.stderr(), /otlp: spool: .*000000000000\.seg: not a spool segment \(bad header, 7 bytes\); removed\n/);
      }
    });
  }
});
