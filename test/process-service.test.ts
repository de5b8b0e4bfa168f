// The attribution stage: environ parsing and the cache, then `tcpspan run` with real processes
// that name their services, a real kernel and a real OTLP gRPC receiver.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from './support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';
import { closedPort } from './support/tcp.js';
import {
  createProcessServices, hostProcProblem, serviceFromEnviron, serviceNameOfResourceAttributes, type ProcessServiceOptions,
} from '../src/attribute/process-service.js';

/** An environment block as /proc/PID/environ holds it. */
const environ = (...entries: string[]): Buffer => Buffer.from(entries.map((e) => `${e}\0`).join(''));

const errno = (code: string): NodeJS.ErrnoException => Object.assign(new Error(code), { code });

describe('process-service', () => {
  describe('serviceFromEnviron', () => {
    const cases: [string, Buffer, string | undefined][] = [
      ['OTEL_SERVICE_NAME', environ('PATH=/bin', 'OTEL_SERVICE_NAME=checkout', 'HOME=/root'), 'checkout'],
      ['OTEL_SERVICE_NAME, trimmed', environ('OTEL_SERVICE_NAME=  checkout \t'), 'checkout'],
      ['service.name in OTEL_RESOURCE_ATTRIBUTES, other keys ignored',
        environ('OTEL_RESOURCE_ATTRIBUTES=deployment.environment.name=prod,service.name=cart,service.version=2'), 'cart'],
      ['a percent-encoded service.name', environ('OTEL_RESOURCE_ATTRIBUTES=service.name=cart%2Ceu%3D1%20%C3%BC'), 'cart,eu=1 ü'],
      ['both: OTEL_SERVICE_NAME wins, as in the SDK',
        environ('OTEL_RESOURCE_ATTRIBUTES=service.name=cart', 'OTEL_SERVICE_NAME=checkout'), 'checkout'],
      ['a blank OTEL_SERVICE_NAME: the attributes', environ('OTEL_SERVICE_NAME= ', 'OTEL_RESOURCE_ATTRIBUTES=service.name=cart'), 'cart'],
      ['the first of two entries of a name, as getenv()', environ('OTEL_SERVICE_NAME=first', 'OTEL_SERVICE_NAME=second'), 'first'],
      ['neither', environ('PATH=/bin', 'OTEL_EXPORTER_OTLP_ENDPOINT=http://x:4317', 'XOTEL_SERVICE_NAME=no'), undefined],
      ['a name that only ends like it', environ('MY_OTEL_SERVICE_NAME=no'), undefined],
      ['an empty environment (a kernel thread, a zombie)', Buffer.alloc(0), undefined],
      ['no final NUL', Buffer.from('A=1\0OTEL_SERVICE_NAME=last'), 'last'],
      ['attributes without service.name', environ('OTEL_RESOURCE_ATTRIBUTES=host.name=a'), undefined],
      ['a malformed list: discarded whole (pair without =)', environ('OTEL_RESOURCE_ATTRIBUTES=service.name=cart,oops'), undefined],
      ['a malformed list: = unescaped in a value', environ('OTEL_RESOURCE_ATTRIBUTES=service.name=a=b'), undefined],
      ['a malformed list: bad percent-encoding', environ('OTEL_RESOURCE_ATTRIBUTES=service.name=cart%zz'), undefined],
      ['a malformed list: empty key', environ('OTEL_RESOURCE_ATTRIBUTES==x,service.name=cart'), undefined],
      ['a name over 255 characters', environ(`OTEL_SERVICE_NAME=${'x'.repeat(256)}`), undefined],
      ['invalid UTF-8 replaced, not thrown', Buffer.from([...Buffer.from('OTEL_SERVICE_NAME=a'), 0xff, 0]), 'a\ufffd'],
    ];
    for (const [what, env, expected] of cases) {
      it(`should read ${what}`, () => assert.equal(serviceFromEnviron(env), expected));
    }
  });

  describe('serviceNameOfResourceAttributes', () => {
    it('should take the last service.name, skip empty pairs and trim', () => {
      assert.equal(serviceNameOfResourceAttributes(' service.name = a ,, service.name=b ,'), 'b');
      assert.equal(serviceNameOfResourceAttributes('service.name='), undefined);
      assert.equal(serviceNameOfResourceAttributes(''), undefined);
      assert.equal(serviceNameOfResourceAttributes('service%2Ename=encoded-key'), 'encoded-key');
    });
  });

  describe('the cache', () => {
    /** A fake procfs: pid -> environ or an errno code, and the reads made. */
    function fakeProc(table: Record<number, Buffer | string>, opts: ProcessServiceOptions = {}) {
      let now = 1000;
      const reads: string[] = [];
      const logs: string[] = [];
      const services = createProcessServices({
        ownPid: 0, now: () => now, log: (m) => logs.push(m), ...opts,
        read: (p) => {
          reads.push(p);
          const v = table[Number(/^\/proc\/(\d+)\/environ$/.exec(p)![1])];
          if (v === undefined) throw errno('ENOENT');
          if (typeof v === 'string') throw errno(v);
          return v;
        },
      });
      return { services, reads, logs, table, advance: (ms: number) => { now += ms; } };
    }

    it('should read a pid once within the TTL, negative answers included, and again after', () => {
      const p = fakeProc({ 10: environ('OTEL_SERVICE_NAME=checkout'), 11: environ('PATH=/bin') }, { ttlMs: 5000 });
      assert.deepEqual([10, 10, 11, 11].map((pid) => p.services.lookup(pid)), ['checkout', 'checkout', undefined, undefined]);
      assert.deepEqual(p.reads, ['/proc/10/environ', '/proc/11/environ']);
      p.table[10] = environ('OTEL_SERVICE_NAME=after-exec');
      p.advance(4999);
      assert.equal(p.services.lookup(10), 'checkout');
      p.advance(1);
      assert.equal(p.services.lookup(10), 'after-exec');
      assert.deepEqual(p.services.stats(), { lookups: 6, reads: 3, failed: { gone: 0, denied: 0, error: 0 } });
    });

    it('should count unreadable processes by reason, never throw, and tell the fix for a denied one once', () => {
      const p = fakeProc({ 20: 'EACCES', 21: 'EPERM', 22: 'EIO' });
      assert.deepEqual([20, 21, 22, 23, 20].map((pid) => p.services.lookup(pid)), [undefined, undefined, undefined, undefined, undefined]);
      assert.deepEqual(p.services.stats().failed, { gone: 1, denied: 2, error: 1 });
      assert.equal(p.reads.length, 4, 'a failure is cached like any answer');
      assert.deepEqual(p.logs, ['cannot read /proc/20/environ (EACCES): spans of other users\' processes keep tcpspan\'s service.name; grant CAP_DAC_READ_SEARCH, and CAP_SYS_PTRACE if that is not enough']);
    });

    it('should keep the last answer for a process found gone at a re-read', () => {
      const p = fakeProc({ 30: environ('OTEL_SERVICE_NAME=short-lived') }, { ttlMs: 100 });
      assert.equal(p.services.lookup(30), 'short-lived'); // at its Open record
      delete p.table[30];
      p.advance(1000);
      assert.equal(p.services.lookup(30), 'short-lived'); // at its Close, after it exited
      assert.deepEqual(p.services.stats().failed, { gone: 1, denied: 0, error: 0 });
    });

    it('should hold at most maxEntries pids, forgetting the oldest read first', () => {
      const table: Record<number, Buffer> = {};
      for (let pid = 1; pid <= 5; pid++) table[pid] = environ(`OTEL_SERVICE_NAME=s${pid}`);
      const p = fakeProc(table, { maxEntries: 3 });
      for (const pid of [1, 2, 3, 4]) p.services.lookup(pid); // 1 is forgotten
      p.reads.length = 0;
      for (const pid of [2, 3, 4, 1]) p.services.lookup(pid);
      assert.deepEqual(p.reads, ['/proc/1/environ']);
    });

    it('should not look up pid 0 or tcpspan\'s own pid', () => {
      const p = fakeProc({ 7: environ('OTEL_SERVICE_NAME=me') }, { ownPid: 7 });
      assert.equal(p.services.lookup(0), undefined);
      assert.equal(p.services.lookup(7), undefined);
      assert.deepEqual(p.reads, []);
    });

    it('should read a real process\'s environment, and find it gone after it exited', async () => {
      const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)'], {
        env: { OTEL_SERVICE_NAME: 'real-child', OTEL_RESOURCE_ATTRIBUTES: 'service.name=not-this' }, stdio: 'ignore',
      });
      await once(child, 'spawn');
      const services = createProcessServices({ ttlMs: 0 });
      assert.equal(services.lookup(child.pid!), 'real-child');
      child.kill();
      await once(child, 'exit');
      assert.equal(services.lookup(child.pid!), 'real-child', 'the last answer stands');
      assert.equal(services.stats().failed.gone, 1);
    });
  });

  describe('hostProcProblem', () => {
    it('should accept the host PID namespace\'s /proc and name the problem of another', function () {
      if (process.getuid?.() !== 0) this.skip();
      assert.equal(hostProcProblem(), undefined);
      assert.match(String(hostProcProblem('/nonexistent')), /^cannot read \/nonexistent\/self \(ENOENT\)$/);
    });
  });
});

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

// A server that answers the first data and closes first (its end gets its pid at FIN_WAIT1),
// and a client that sends, waits for the server's close, closes and stays (the test kills it: a
// process gone before tcpspan read its environment would have no service, on a slow machine too).
const SERVER_JS = `const s = require('net').createServer((c) => { c.on('error', () => {}); c.once('data', () => c.end('abc')); });
s.listen(Number(process.argv[1]), '127.0.0.1', () => console.error('ready'));`;
const CLIENT_JS = `const c = require('net').connect(Number(process.argv[1]), '127.0.0.1', () => { console.error('ready ' + c.localPort); c.write('hello'); });
c.on('data', () => {}); c.on('end', () => c.end()); c.on('close', () => setTimeout(() => process.exit(0), 30000));`;

describe('tcpspan run with attribution.serviceFromProcess', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver | undefined;
  const procs: ReadyProcess[] = [];

  afterEach(async () => {
    for (const p of procs.splice(0)) if (p.child.exitCode === null) await p.stop('SIGKILL');
    await receiver?.close();
    receiver = undefined;
  });

  const start = async (args: string[], env: Record<string, string>, ready: string) => {
    const p = await spawnUntilReady(process.execPath, args, { ready, env: { PATH: process.env['PATH'] ?? '', ...env } });
    procs.push(p);
    return p;
  };

  /**
   * tcpspan watching two ports: on the first, a server and a client that name their services
   * (OTEL_SERVICE_NAME; OTEL_RESOURCE_ATTRIBUTES, percent-encoded); on the second, a server and
   * a client that name none. Returns the four spans and tcpspan's stderr.
   */
  async function fourEnds(tcpspanEnv: Record<string, string>) {
    receiver = await startOtlpReceiver();
    const named = await closedPort(4), plain = await closedPort(4);
    const run = await start([MAIN, 'run', '--port', String(named), '--port', String(plain), '--otlp-endpoint', receiver.endpoint],
      { OTEL_SERVICE_NAME: 'tcpspan-test', OTEL_BSP_SCHEDULE_DELAY: '50', ...tcpspanEnv }, 'running:');
    const namedServer = await start(['-e', SERVER_JS, String(named)], { OTEL_SERVICE_NAME: 'shop-server' }, 'ready');
    const plainServer = await start(['-e', SERVER_JS, String(plain)], {}, 'ready');
    const namedClient = await start(['-e', CLIENT_JS, String(named)],
      { OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=test,service.name=shop%20client,service.version=1.2' }, 'ready');
    const plainClient = await start(['-e', CLIENT_JS, String(plain)], {}, 'ready');
    const spans = await receiver.waitForSpans(4, 15_000);
    assert.equal(await run.stop(), 0, run.stderr());
    assert.equal(receiver.spans().length, 4, 'one span per connection end');
    const end = (port: number, kind: 'SPAN_KIND_CLIENT' | 'SPAN_KIND_SERVER'): ReceivedSpan => {
      const s = spans.find((x) => x.kindName === kind && x.attributes[kind === 'SPAN_KIND_SERVER' ? 'network.local.port' : 'network.peer.port'] === port);
      assert.ok(s, `no ${kind} span on port ${port}`);
      return s;
    };
    return {
      stderr: run.stderr(),
      ends: [
        [end(named, 'SPAN_KIND_CLIENT'), namedClient.child.pid], [end(named, 'SPAN_KIND_SERVER'), namedServer.child.pid],
        [end(plain, 'SPAN_KIND_CLIENT'), plainClient.child.pid], [end(plain, 'SPAN_KIND_SERVER'), plainServer.child.pid],
      ] as [ReceivedSpan, number][],
    };
  }

  it('should export the ends of processes that name their service under that service, the others under tcpspan\'s', async function () {
    if (process.getuid?.() !== 0) this.skip(); // loading BPF programs needs root
    const { ends, stderr } = await fourEnds({});
    // every end is its process's (the server's pid comes with its close)
    assert.deepEqual(ends.map(([s]) => s.attributes['process.pid']), ends.map(([, pid]) => pid));
    assert.deepEqual(ends.map(([s]) => s.resource['service.name']), ['shop client', 'shop-server', 'tcpspan-test', 'tcpspan-test']);
    // the same resource otherwise (host, OS, SDK), without tcpspan's other service.* attributes
    const own = ends[2]![0].resource;
    const { 'service.name': _n, ...where } = own;
    assert.ok(where['host.name'] !== undefined && where['os.type'] === 'linux', JSON.stringify(own));
    assert.deepEqual(ends[0]![0].resource, { ...where, 'service.name': 'shop client' });
    assert.deepEqual(ends[1]![0].resource, { ...where, 'service.name': 'shop-server' });
    assert.deepEqual(ends[3]![0].resource, own);
    assert.match(stderr, /; correlator drops: none; service lookups failed: none; spans dropped: none\n/);
  });

  it('should export every end under tcpspan\'s service with TCPSPAN_SERVICE_FROM_PROCESS=false', async function () {
    if (process.getuid?.() !== 0) this.skip();
    const { ends, stderr } = await fourEnds({ TCPSPAN_SERVICE_FROM_PROCESS: 'false' });
    assert.deepEqual(ends.map(([s]) => s.resource['service.name']), ['tcpspan-test', 'tcpspan-test', 'tcpspan-test', 'tcpspan-test']);
    assert.match(stderr, /; correlator drops: none; spans dropped: none\n/);
  });

  it('should refuse a bad TCPSPAN_SERVICE_FROM_PROCESS with one line and exit status 2', async () => {
    const child = spawn(process.execPath, [MAIN, 'run'], {
      stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: process.env['PATH'] ?? '', TCPSPAN_SERVICE_FROM_PROCESS: 'maybe' },
    });
    let err = '';
    child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
    const [code] = (await once(child, 'exit')) as [number];
    assert.equal(code, 2);
    assert.equal(err, 'tcpspan: config: attribution.serviceFromProcess = "maybe" (from TCPSPAN_SERVICE_FROM_PROCESS): expected true or false\n');
  });
});
