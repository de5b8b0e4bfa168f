// `tcpspan run` as users run it: a process, real connections, a real OTLP gRPC receiver.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { closedPort, connectMany, startServer, type TestServer } from './support/tcp.js';
import { ownNetns } from './support/capture-session.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

type RunProcess = ReadyProcess;

function startRun(args: string[], env: Record<string, string> = {}): Promise<RunProcess> {
  return spawnUntilReady(process.execPath, [MAIN, 'run', ...args], {
    ready: 'running:',
    env: { PATH: process.env['PATH'] ?? '', OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRIC_EXPORT_INTERVAL: '500', ...env },
  });
}

function byPort(spans: ReceivedSpan[], port: number, kind: 'SPAN_KIND_CLIENT' | 'SPAN_KIND_SERVER'): ReceivedSpan {
  const key = kind === 'SPAN_KIND_CLIENT' ? 'network.local.port' : 'network.peer.port';
  const s = spans.find((x) => x.kindName === kind && x.attributes[key] === port);
  assert.ok(s, `no ${kind} span for client port ${port}`);
  return s;
}

describe('tcpspan run', function () {
  this.timeout(90_000);
  let receiver: OtlpReceiver | undefined;
  let server: TestServer | undefined;
  let run: RunProcess | undefined;

  afterEach(async () => {
    if (run && run.child.exitCode === null) await run.stop();
    await server?.close();
    await receiver?.close();
    run = undefined; server = undefined; receiver = undefined;
  });

  it('should turn 1,000 loopback connections into 2,000 spans at an OTLP gRPC receiver, both ends in one trace', async () => {
    receiver = await startOtlpReceiver();
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    run = await startRun(['--port', String(server.port)], { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_SERVICE_NAME: 'tcpspan-test' });
    const ports = await connectMany(4, server.port, 1000);
    const spans = await receiver.waitForSpans(2000, 20_000);
    assert.equal(await run.stop(), 0);
    assert.equal(receiver.spans().length, 2000, 'exactly one span per connection end, nothing lost, nothing twice');
    assert.match(run.stderr(),
      /stopped: (\d+) kernel events, 2000 spans \(otlp 2000\); kernel counters: submitted \1, ringbuf_full 0, sock_map_full 0, syn_map_full 0, recursion_misses 0; lost kernel events 0; correlator drops: none; service lookups failed: none; spans dropped: none\n/);

    // every connection: a client span and a server span sharing the trace, the server a child of the client
    for (const p of ports) {
      const c = byPort(spans, p, 'SPAN_KIND_CLIENT');
      const s = byPort(spans, p, 'SPAN_KIND_SERVER');
      assert.deepEqual({ trace: s.traceId, parent: s.parentSpanId }, { trace: c.traceId, parent: c.spanId }, `connection from port ${p}`);
      assert.equal(c.parentSpanId, '');
    }
    assert.equal(new Set(spans.map((s) => s.traceId)).size, 1000);

    // one connection, whole spans
    const c = byPort(spans, ports[500]!, 'SPAN_KIND_CLIENT');
    const s = byPort(spans, ports[500]!, 'SPAN_KIND_SERVER');
    const netns = ownNetns();
    const variable = (span: ReceivedSpan) => {
      const a = span.attributes;
      assert.ok(typeof a['tcpspan.socket.cookie'] === 'number' && a['tcpspan.socket.cookie'] > 0);
      for (const k of ['tcp.handshake.duration', 'tcp.rtt.min', 'tcp.rtt.avg', 'tcp.rtt.max', 'tcp.rtt.smoothed']) {
        assert.ok(typeof a[k] === 'number' && (a[k] as number) > 0 && (a[k] as number) < 1, `${k} = ${a[k]}`);
      }
      assert.ok((a['tcp.rtt.min'] as number) <= (a['tcp.rtt.avg'] as number) && (a['tcp.rtt.avg'] as number) <= (a['tcp.rtt.max'] as number));
      assert.ok(span.endTimeUnixNano > span.startTimeUnixNano && span.endTimeUnixNano - span.startTimeUnixNano < 5_000_000_000n);
      const { 'tcpspan.socket.cookie': _c, 'tcp.handshake.duration': _h, 'tcp.rtt.min': _a, 'tcp.rtt.avg': _b, 'tcp.rtt.max': _d, 'tcp.rtt.smoothed': _e, 'tcp.rtt.samples': samples, ...rest } = a;
      assert.ok(typeof samples === 'number' && samples >= 1);
      return rest;
    };
    const common = {
      'network.transport': 'tcp', 'network.type': 'ipv4', 'network.local.address': '127.0.0.1', 'network.peer.address': '127.0.0.1',
      'tcp.retransmits': 0, 'tcpspan.netns': netns, 'process.pid': process.pid, 'process.executable.name': 'node',
    };
    assert.deepEqual(variable(c), {
      ...common, 'network.local.port': ports[500], 'network.peer.port': server.port,
      'tcp.close.reason': 'fin', 'tcp.close.initiator': 'local',
      'tcp.bytes.sent': 5, 'tcp.bytes.received': 3, 'tcp.segments.sent': c.attributes['tcp.segments.sent'], 'tcp.segments.received': c.attributes['tcp.segments.received'],
    });
    assert.deepEqual(variable(s), {
      ...common, 'network.local.port': server.port, 'network.peer.port': ports[500],
      'tcp.close.reason': 'fin', 'tcp.close.initiator': 'peer',
      'tcp.bytes.sent': 3, 'tcp.bytes.received': 5, 'tcp.segments.sent': s.attributes['tcp.segments.sent'], 'tcp.segments.received': s.attributes['tcp.segments.received'],
    });
    assert.ok((c.attributes['tcp.segments.sent'] as number) >= 3 && (s.attributes['tcp.segments.received'] as number) >= 3);
    assert.deepEqual({ name: c.name, status: c.status, scope: c.scopeName, service: c.resource['service.name'] },
      { name: 'tcp.connection', status: { code: 0, message: '' }, scope: 'tcpspan', service: 'tcpspan-test' });
    assert.deepEqual(c.events.filter((e) => e.name === 'tcp.state_change').map((e) => e.attributes['network.connection.state']),
      ['syn_sent', 'established', 'fin_wait_1', 'fin_wait_2', 'closed']);
    assert.deepEqual(s.events.filter((e) => e.name === 'tcp.state_change').map((e) => e.attributes['network.connection.state']),
      ['syn_received', 'established', 'close_wait', 'last_ack', 'closed']);

    // metrics arrived, and agree with the spans
    const closed = await receiver.waitForMetric('tcp.connections.closed', 5000);
    assert.equal(closed.type, 'sum');
    const fin = closed.type === 'sum' ? closed.dataPoints.filter((p) => p.attributes['tcp.close.reason'] === 'fin').reduce((n, p) => n + Number(p.value), 0) : 0;
    assert.equal(fin, 2000);
    const duration = await receiver.waitForMetric('tcp.connection.duration', 5000);
    assert.deepEqual({ type: duration.type, unit: duration.unit }, { type: 'histogram', unit: 's' });
    await receiver.waitForMetric('tcpspan.kernel.events', 5000);
  });

  it('should put both ends of an IPv6 connection in one trace', async () => {
    receiver = await startOtlpReceiver();
    server = await startServer(6, { reply: 3, closeDelayMs: 1 });
    run = await startRun(['--port', String(server.port), '--otlp-endpoint', receiver.endpoint]);
    const [p] = await connectMany(6, server.port, 1);
    await receiver.waitForSpans(2, 10_000);
    assert.equal(await run.stop(), 0);
    const c = byPort(receiver.spans(), p!, 'SPAN_KIND_CLIENT');
    const s = byPort(receiver.spans(), p!, 'SPAN_KIND_SERVER');
    assert.deepEqual({ type: c.attributes['network.type'], local: c.attributes['network.local.address'], trace: s.traceId, parent: s.parentSpanId },
      { type: 'ipv6', local: '::1', trace: c.traceId, parent: c.spanId });
  });

  it('should write the same spans as OTLP/JSON lines with --traces-file', async () => {
    receiver = await startOtlpReceiver();
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    const file = path.join(mkdtempSync(path.join(tmpdir(), 'tcpspan-')), 'spans.jsonl');
    run = await startRun(['--port', String(server.port), '--otlp-endpoint', receiver.endpoint, '--traces-file', file]);
    await connectMany(4, server.port, 20);
    await receiver.waitForSpans(40, 10_000);
    assert.equal(await run.stop(), 0);
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    const fromFile = lines.flatMap((l) => (JSON.parse(l) as { resourceSpans: { scopeSpans: { spans: { spanId: string; traceId: string; name: string }[] }[] }[] })
      .resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans)));
    assert.deepEqual(fromFile.map((s) => `${s.traceId}/${s.spanId}/${s.name}`).sort(),
      receiver.spans().map((s) => `${s.traceId}/${s.spanId}/${s.name}`).sort());
  });

  it('should print one readable line per connection end with no OTLP endpoint', async () => {
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    run = await startRun(['--port', String(server.port)]);
    const [p] = await connectMany(4, server.port, 1);
    const deadline = Date.now() + 5000;
    while (run.stdout().split('\n').length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(await run.stop(), 0);
    const lines = run.stdout().trim().split('\n');
    assert.match(lines[0]!, /^TIME +KIND +PID +COMM +LOCAL -> PEER/);
    assert.equal(lines.length, 3);
    assert.match(lines.find((l) => l.includes(` client `))!, new RegExp(`^\\d\\d:\\d\\d:\\d\\d\\.\\d{3} client ${process.pid} +node +127\\.0\\.0\\.1:${p} -> 127\\.0\\.0\\.1:${server.port} .* +5 +3 fin\\(local\\)$`));
    assert.match(lines.find((l) => l.includes(` server `))!, new RegExp(`server ${process.pid} +node +127\\.0\\.0\\.1:${server.port} -> 127\\.0\\.0\\.1:${p} .* +3 +5 fin\\(peer\\)$`));
  });

  it('should load its programs under a profiler (a SIGPROF every 100 µs), and trace', async () => {
    // the verifier gives up with EAGAIN while a signal is pending: without blocking signals for the
    // load, `node --cpu-prof` could not start tcpspan at all
    const dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-prof-'));
    try {
      server = await startServer(4, { reply: 3, closeDelayMs: 1 });
      run = await spawnUntilReady(process.execPath, ['--cpu-prof', '--cpu-prof-interval', '100', '--cpu-prof-dir', dir, MAIN, 'run', '--port', String(server.port)], {
        ready: 'running:', env: { PATH: process.env['PATH'] ?? '' },
      });
      await connectMany(4, server.port, 1);
      const deadline = Date.now() + 15_000;
      while (run.stdout().split('\n').length < 4 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await run.stop(), 0, run.stderr());
      assert.equal(run.stdout().trim().split('\n').length, 3, run.stdout());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('should end connections still open at shutdown as incomplete, and flush them', async () => {
    receiver = await startOtlpReceiver();
    server = await startServer(4, { onConnection: () => undefined });
    run = await startRun(['--port', String(server.port), '--otlp-endpoint', receiver.endpoint]);
    const sock = net.connect(server.port, '127.0.0.1');
    await once(sock, 'connect');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(await run.stop(), 0);
    sock.destroy();
    const spans = receiver.spans();
    assert.deepEqual(spans.map((s) => [s.kindName, s.attributes['tcp.close.reason']]).sort(),
      [['SPAN_KIND_CLIENT', 'incomplete'], ['SPAN_KIND_SERVER', 'incomplete']]);
  });

  it('should exit within its shutdown deadline against a collector that never answers, counting every span once', async () => {
    receiver = await startOtlpReceiver({ delayMs: 60_000 });
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    const dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-run-'));
    const config = path.join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ export: { shutdownTimeoutMs: 2000, metricIntervalMs: 500, batch: { maxExportBatchSize: 8 } } }));
    try {
      run = await startRun(['--config', config, '--port', String(server.port), '--otlp-endpoint', receiver.endpoint]);
      await connectMany(4, server.port, 20); // 40 spans: one batch of 8 goes out and hangs, 32 wait behind it
      await new Promise((r) => setTimeout(r, 500));
      const t0 = Date.now();
      assert.equal(await run.stop(), 0);
      const took = Date.now() - t0;
      assert.ok(took < 3000, `exit ${took} ms after SIGTERM; the deadline is 2000 ms`);
      const line = run.stderr().split('\n').find((l) => l.startsWith('tcpspan: stopped:'))!;
      assert.match(line, / 40 spans \(otlp 0\)/, line);
      assert.match(line, /spans dropped: otlp:shutdown_deadline 32, otlp:shutdown_unconfirmed 8$/, line);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('should refuse a bad setting with one line naming it, before attaching anything', async () => {
    const child = spawn(process.execPath, [MAIN, 'run', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '' } });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2);
    assert.equal(err.trim().split('\n').length, 1, err);
    assert.match(err, /^tcpspan: config: filter\.ports/);
  });

  describe('--traces-file checked at start', () => {
    let dir: string;
    before(() => { dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-tf-')); });
    after(() => rmSync(dir, { recursive: true, force: true }));

    /** `tcpspan run --traces-file file`: its exit code and stderr (it never gets to attach). */
    async function refused(file: string, spawnAs: { uid?: number; gid?: number } = {}): Promise<{ code: number; err: string }> {
      const child = spawn(process.execPath, [MAIN, 'run', '--traces-file', file], {
        stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '' }, ...spawnAs,
      });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const [code] = (await once(child, 'exit')) as [number];
      return { code, err };
    }

    const head = (file: string) => `tcpspan: config: export.tracesFile = ${JSON.stringify(file)} (from --traces-file): cannot open it for appending (`;
    const KINDS: [string, () => string, RegExp][] = [
      ['a directory', () => dir, /\(EISDIR: .*\): it is a directory; name a file in it, e\.g\. .*\/traces\.jsonl, or '-' for stdout$/],
      ['a missing directory', () => path.join(dir, 'missing', 'spans.jsonl'), /\(ENOENT: .*\): its directory .*\/missing does not exist; create it or choose another path, or '-' for stdout$/],
      ['a file in /proc', () => '/proc/x', /\(ENOENT: .*\): \/proc cannot hold new files; choose another path, or '-' for stdout$/],
      ['a path through a file', () => { writeFileSync(path.join(dir, 'plain'), ''); return path.join(dir, 'plain', 'spans.jsonl'); },
        /\(ENOTDIR: .*\): a part of the path is not a directory; choose another path, or '-' for stdout$/],
    ];
    for (const [kind, file, reason] of KINDS) {
      it(`should refuse ${kind} with one line and exit status 2`, async () => {
        const f = file();
        const { code, err } = await refused(f);
        assert.equal(code, 2, err);
        assert.equal(err.trim().split('\n').length, 1, err);
        assert.ok(err.startsWith(head(f)), err);
        assert.match(err.trim(), reason);
      });
    }

    it('should refuse a path its user may not write to with one line and exit status 2', async function () {
      if (process.getuid?.() !== 0) this.skip(); // runs tcpspan as nobody
      chmodSync(dir, 0o755); // nobody may enter it, but not write in it
      const sub = mkdtempSync(path.join(dir, 'locked-'));
      chmodSync(sub, 0o755);
      const f = path.join(sub, 'spans.jsonl');
      const { code, err } = await refused(f, { uid: 65534, gid: 65534 });
      assert.equal(code, 2, err);
      assert.equal(err.trim().split('\n').length, 1, err);
      assert.ok(err.startsWith(head(f)), err);
      assert.match(err.trim(), /\(EACCES: permission denied\): tcpspan's user may not write there; grant it write access or choose another path, or '-' for stdout$/);
    });
  });

  describe('health endpoints', () => {
    const get = async (address: string, p: string): Promise<{ status: number; body: string }> => {
      const res = await fetch(`http://${address}${p}`);
      return { status: res.status, body: await res.text() };
    };

    it('should not be ready before the programs are attached, be ready after, and free the port at exit', async () => {
      receiver = await startOtlpReceiver();
      const address = `127.0.0.1:${await closedPort(4)}`;
      // probe from the moment it starts: every answer before 'running:' may be 503, none after
      const seen: { status: number; body: string }[] = [];
      let probing = true;
      const starting = startRun(['--otlp-endpoint', receiver.endpoint], { TCPSPAN_HEALTH_LISTEN: address });
      const prober = (async () => {
        while (probing) {
          try {
            seen.push(await get(address, '/readyz'));
          } catch { /* not listening yet */ }
          await new Promise((r) => setTimeout(r, 5));
        }
      })();
      run = await starting;
      assert.match(run.stderr(), new RegExp(`; health on http://${address.replace(/\./g, '\\.')}; SIGINT`));
      assert.deepEqual(await get(address, '/readyz'), { status: 200, body: 'ready\n' });
      probing = false;
      await prober;
      for (const s of seen) {
        assert.ok(s.status === 200 || (s.status === 503 && s.body === 'not ready: programs not attached yet\n'), JSON.stringify(s));
      }
      const firstReady = seen.findIndex((s) => s.status === 200);
      assert.ok(seen.slice(firstReady === -1 ? seen.length : firstReady).every((s) => s.status === 200), 'never back to 503 once ready');
      assert.deepEqual(await get(address, '/healthz'), { status: 200, body: 'ok\n' });

      assert.equal(await run.stop(), 0);
      // the port is free again
      const again = net.createServer();
      const [host, port] = address.split(':');
      await new Promise<void>((resolve, reject) => { again.once('error', reject); again.listen(Number(port), host, resolve); });
      await new Promise((r) => again.close(r));
    });

    it('should say not ready while span exports fail (collector down), and why', async () => {
      server = await startServer(4, { reply: 3, closeDelayMs: 1 });
      const address = `127.0.0.1:${await closedPort(4)}`;
      const nobody = `http://127.0.0.1:${await closedPort(4)}`;
      run = await startRun(['--port', String(server.port), '--otlp-endpoint', nobody], { TCPSPAN_HEALTH_LISTEN: address });
      assert.equal((await get(address, '/readyz')).status, 200, 'no export needed yet');
      await connectMany(4, server.port, 1); // spans to export
      let r = await get(address, '/readyz');
      const deadline = Date.now() + 10_000;
      while (r.status === 200 && Date.now() < deadline) {
        await new Promise((res) => setTimeout(res, 50));
        r = await get(address, '/readyz');
      }
      assert.equal(r.status, 503);
      assert.match(r.body, /^not ready: otlp export failing: 14 UNAVAILABLE: .*\n$/);
      assert.ok(r.body.length < 220, r.body);
      assert.equal((await get(address, '/healthz')).status, 200, 'alive all the same');
      assert.equal(await run.stop(), 0);
    });

    it('should refuse an address it cannot listen on with one line and exit status 2', async () => {
      const taken = net.createServer();
      await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
      const address = `127.0.0.1:${(taken.address() as net.AddressInfo).port}`;
      try {
        const child = spawn(process.execPath, [MAIN, 'run'], {
          stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '', TCPSPAN_HEALTH_LISTEN: address },
        });
        let err = '';
        child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
        const [code] = (await once(child, 'exit')) as [number];
        assert.equal(code, 2, err);
        assert.equal(err, `tcpspan: config: health.listen = "${address}" (from TCPSPAN_HEALTH_LISTEN): cannot listen there (EADDRINUSE): another process listens there; choose a free port\n`);
      } finally {
        await new Promise((r) => taken.close(r));
      }
    });
  });
});
