// Payload inspection (inspect.traceparent, inspect.protocols) as users run it: `tcpspan run`,
// real sockets on loopback, a real OTLP gRPC receiver decoding the official protos.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import path from 'node:path';
import tls from 'node:tls';
import { openCapture } from '../src/capture/probes.js';
import { NO_FILTER } from '../src/capture/filter.js';
import { programsOf } from '../bench/kernel-objects.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const PAYLOAD_PROGRAMS = ['handle_egress', 'handle_ingress'];

function startRun(args: string[], env: Record<string, string>): Promise<ReadyProcess> {
  return spawnUntilReady(process.execPath, [MAIN, 'run', ...args], {
    ready: 'running:',
    env: { PATH: process.env['PATH'] ?? '', OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRICS_EXPORTER: 'none', ...env },
  });
}

/** The client and server spans of the one connection to `port`. */
function endsOf(spans: ReceivedSpan[], port: number): { client: ReceivedSpan; server: ReceivedSpan } {
  const client = spans.filter((s) => s.kindName === 'SPAN_KIND_CLIENT' && s.attributes['network.peer.port'] === port);
  const server = spans.filter((s) => s.kindName === 'SPAN_KIND_SERVER' && s.attributes['network.local.port'] === port);
  assert.equal(client.length, 1, `client spans to port ${port}`);
  assert.equal(server.length, 1, `server spans on port ${port}`);
  return { client: client[0]!, server: server[0]! };
}

const PROTOCOL_KEYS = ['network.protocol.name', 'network.protocol.version', 'http.request.method', 'http.request.method_original',
  'tls.protocol.name', 'tls.protocol.version', 'server.address', 'db.system.name', 'db.operation.name'];

function protocolAttributes(s: ReceivedSpan): Record<string, unknown> {
  return Object.fromEntries(PROTOCOL_KEYS.filter((k) => k in s.attributes).map((k) => [k, s.attributes[k]]));
}

async function listen(server: net.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

/** A plain TCP server: `onConnection` per socket; sockets are destroyed at close. */
function rawServer(onConnection: (s: net.Socket) => void): net.Server {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    onConnection(s);
  });
  server.on('close', () => { for (const s of sockets) s.destroy(); });
  return server;
}

/** Connects, writes `send`, and closes when the peer does (or, with `endOnData`, once data came). */
function rawClient(port: number, send: Buffer | undefined, endOnData = false): Promise<void> {
  return new Promise((resolve) => {
    // every listener before the connection exists: nothing can come before its listener
    const s = net.connect(port, '127.0.0.1', () => { if (send) s.write(send); });
    s.on('error', () => {});
    s.on('data', () => { if (endOnData) s.end(); });
    s.on('end', () => s.end());
    s.on('close', () => resolve());
  });
}

describe('payload inspection', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver | undefined;
  let run: ReadyProcess | undefined;
  const servers: net.Server[] = [];

  afterEach(async () => {
    if (run && run.child.exitCode === null) await run.stop();
    for (const s of servers.splice(0)) await new Promise((r) => s.close(r));
    await receiver?.close();
    run = undefined; receiver = undefined;
  });

  describe('inspect.traceparent', () => {
    it('should link the client span and the server span of a keep-alive connection to each request\'s span, exactly', async () => {
      receiver = await startOtlpReceiver();
      const server = http.createServer((req, res) => { req.resume(); req.on('end', () => res.end('ok')); });
      servers.push(server);
      const port = await listen(server);
      run = await startRun(['--port', String(port)], { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, TCPSPAN_INSPECT_TRACEPARENT: 'true' });

      const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
      const sent: { traceId: string; spanId: string; flags: number }[] = [];
      const localPorts = new Set<number>();
      for (let i = 0; i < 5; i++) {
        const ctx = { traceId: randomBytes(16).toString('hex'), spanId: randomBytes(8).toString('hex'), flags: i % 2 === 0 ? 1 : 0 };
        sent.push(ctx);
        // header names are case-insensitive: one request spells it differently
        const name = i === 3 ? 'TraceParent' : 'traceparent';
        await new Promise<void>((resolve, reject) => {
          const req = http.request({ host: '127.0.0.1', port, path: `/item/${i}?secret=${i}`, method: i === 2 ? 'POST' : 'GET', agent,
            headers: { [name]: `00-${ctx.traceId}-${ctx.spanId}-0${ctx.flags}`, 'x-other': 'y' } }, (res) => {
            localPorts.add(res.socket.localPort!);
            res.resume();
            res.on('end', resolve);
          });
          req.on('error', reject);
          req.end(i === 2 ? 'a body' : undefined);
        });
      }
      assert.equal(localPorts.size, 1, 'all five requests went over one connection');
      agent.destroy();
      await receiver.waitForSpans(2, 15_000);
      assert.equal(await run.stop(), 0);

      const { client, server: srv } = endsOf(receiver.spans(), port);
      // a link is another process's span: remote, with its W3C flags (0x100 HAS_IS_REMOTE, 0x200 IS_REMOTE)
      const want = sent.map((c) => ({ traceId: c.traceId, spanId: c.spanId, traceState: '', flags: 0x300 | c.flags, attributes: {} }));
      assert.deepEqual(client.links, want, 'client span: one link per request sent');
      assert.deepEqual(srv.links, want, 'server span: one link per request received');
      assert.match(run.stderr(), /correlator drops: none/);
    });
  });

  describe('inspect.protocols', () => {
    it('should name TLS (version offered, SNI), HTTP/1.1, HTTP/2, PostgreSQL, MySQL and Redis from the first bytes, and nothing for the unknown', async () => {
      receiver = await startOtlpReceiver();
      // TLS: a plain server suffices, the ClientHello is sent regardless; it closes after reading it
      const tlsServer = rawServer((s) => s.once('data', () => s.destroy()));
      const httpServer = http.createServer((req, res) => { req.resume(); res.end('ok'); });
      const h2Server = http2.createServer();
      h2Server.on('stream', (stream) => { stream.respond({ ':status': 200 }); stream.end('ok'); });
      const pgServer = rawServer((s) => s.once('data', () => s.end()));
      const mysqlServer = rawServer((s) => {
        // Protocol::HandshakeV10: length, sequence 0, protocol 10, version, connection id, ...
        const body = Buffer.concat([Buffer.from([10]), Buffer.from('8.0.36\0'), Buffer.alloc(4, 1), Buffer.alloc(9, 0x41), Buffer.alloc(20, 0)]);
        const head = Buffer.from([body.length & 0xff, body.length >> 8, 0, 0]);
        s.write(Buffer.concat([head, body]));
        s.on('end', () => s.end());
      });
      const redisServer = rawServer((s) => s.once('data', () => s.end('+PONG\r\n')));
      const unknownServer = rawServer((s) => s.once('data', () => s.end('bye')));
      const all = [tlsServer, httpServer, h2Server, pgServer, mysqlServer, redisServer, unknownServer];
      servers.push(...all);
      const [tlsPort, httpPort, h2Port, pgPort, mysqlPort, redisPort, unknownPort] = await Promise.all(all.map((s) => listen(s)));
      run = await startRun(all.flatMap((_, i) => ['--port', String([tlsPort, httpPort, h2Port, pgPort, mysqlPort, redisPort, unknownPort][i])]),
        { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, TCPSPAN_INSPECT_PROTOCOLS: 'true' });

      const t = tls.connect({ host: '127.0.0.1', port: tlsPort!, servername: 'api.example.test', rejectUnauthorized: false });
      await new Promise((resolve) => { t.on('error', () => {}); t.on('close', resolve); }); // events.once would reject on the error
      await new Promise<void>((resolve, reject) => {
        http.get({ host: '127.0.0.1', port: httpPort!, path: '/private/path', agent: false }, (res) => { res.resume(); res.on('end', resolve); }).on('error', reject);
      });
      const h2 = http2.connect(`http://127.0.0.1:${h2Port}`);
      await new Promise<void>((resolve, reject) => {
        const req = h2.request({ ':path': '/' });
        req.on('error', reject);
        req.resume();
        req.on('end', resolve);
        req.end();
      });
      h2.close();
      await once(h2, 'close');
      // StartupMessage: length, protocol 3.0, user\0alice\0database\0db\0\0
      const params = Buffer.from('user\0alice\0database\0db\0\0');
      const startup = Buffer.alloc(8 + params.length);
      startup.writeUInt32BE(startup.length, 0);
      startup.writeUInt32BE(196608, 4);
      params.copy(startup, 8);
      await rawClient(pgPort!, startup);
      await rawClient(mysqlPort!, undefined, true);
      await rawClient(redisPort!, Buffer.from('*2\r\n$5\r\nhello\r\n$1\r\n3\r\n'));
      await rawClient(unknownPort!, Buffer.from('hello there\n'));

      await receiver.waitForSpans(14, 15_000);
      assert.equal(await run.stop(), 0);
      const spans = receiver.spans();
      const expect: [number, Record<string, unknown>][] = [
        [tlsPort!, { 'tls.protocol.name': 'tls', 'tls.protocol.version': '1.3', 'server.address': 'api.example.test' }],
        [httpPort!, { 'network.protocol.name': 'http', 'network.protocol.version': '1.1', 'http.request.method': 'GET' }],
        [h2Port!, { 'network.protocol.name': 'http', 'network.protocol.version': '2' }],
        [pgPort!, { 'db.system.name': 'postgresql', 'network.protocol.name': 'postgresql', 'network.protocol.version': '3.0' }],
        [mysqlPort!, { 'db.system.name': 'mysql', 'network.protocol.name': 'mysql', 'network.protocol.version': '10' }],
        [redisPort!, { 'db.system.name': 'redis', 'network.protocol.name': 'redis', 'db.operation.name': 'HELLO' }],
        [unknownPort!, {}],
      ];
      for (const [port, want] of expect) {
        const { client, server } = endsOf(spans, port);
        assert.deepEqual({ client: protocolAttributes(client), server: protocolAttributes(server) }, { client: want, server: want }, `port ${port}`);
      }
      // the path, the user, the database are nowhere
      const text = JSON.stringify(spans.map((s) => s.attributes));
      for (const secret of ['/private/path', 'alice', '"db"']) assert.ok(!text.includes(secret), secret);
    });
  });

  describe('with every inspect option off (the default)', () => {
    it('should not even load the payload programs: capture reports them not loaded', () => {
      const capture = openCapture({ filter: NO_FILTER, ringBytes: 1 << 16, synTiming: true });
      try {
        assert.deepEqual(capture.programs.filter((p) => PAYLOAD_PROGRAMS.includes(p.program)).map((p) => ({ program: p.program, loaded: p.loaded, attached: p.attached, note: p.note })),
          PAYLOAD_PROGRAMS.map((program) => ({ program, loaded: false, attached: false, note: 'not loaded: inspect.traceparent and inspect.protocols are off' })));
        assert.deepEqual(programsOf(process.pid).filter((p) => p.type === 'cgroup_skb'), []);
      } finally {
        capture.close();
      }
    });

    it('should hold no payload program in `tcpspan run`, and both with an inspect option on', async () => {
      // cgroup_skb programs that read payload: the SYN accounting program (detect) reads headers only
      const payload = (pid: number): string[] => programsOf(pid).filter((p) => p.type === 'cgroup_skb' && PAYLOAD_PROGRAMS.includes(p.name ?? '')).map((p) => p.name ?? '').sort();
      run = await startRun(['--port', '1'], { OTEL_TRACES_EXPORTER: 'none' });
      assert.deepEqual(payload(run.child.pid!), []);
      assert.ok(programsOf(run.child.pid!).length > 0, 'the bpftool listing found none of its programs at all');
      assert.equal(await run.stop(), 0);
      run = await startRun(['--port', '1'], { OTEL_TRACES_EXPORTER: 'none', TCPSPAN_INSPECT_PROTOCOLS: 'true' });
      assert.deepEqual(payload(run.child.pid!), PAYLOAD_PROGRAMS);
    });
  });
});
