// A ring buffer far too small for a burst: records are lost in the kernel (counted), and what
// tcpspan makes of the rest stays true. Ends whose Close was lost are found once the kernel no
// longer holds them and ended (incomplete, kernel_events_lost), not left open until shutdown;
// no connection made after start is mistaken for one open before it.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';
import { LOOPBACK, startServer, type TestServer } from './support/tcp.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

/** `n` connections, `parallel` at a time: connect, send, read the reply, close. */
async function burst(port: number, n: number, parallel: number): Promise<void> {
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < n) {
      next++;
      const s = net.connect(port, LOOPBACK[4]);
      s.on('error', () => undefined);
      await once(s, 'connect');
      s.write('hello');
      await once(s, 'data');
      s.end();
      await once(s, 'close');
    }
  };
  await Promise.all(Array.from({ length: parallel }, one));
}

describe('ring overflow', function () {
  this.timeout(120_000);
  let receiver: OtlpReceiver | undefined;
  let server: TestServer | undefined;
  let run: ReadyProcess | undefined;
  let dir: string | undefined;

  afterEach(async () => {
    if (run && run.child.exitCode === null) await run.stop();
    await server?.close();
    await receiver?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
    run = undefined; server = undefined; receiver = undefined; dir = undefined;
  });

  it('should end the ends whose Close was lost, flag them, and mistake none for open before start', async () => {
    receiver = await startOtlpReceiver();
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-ring-'));
    const config = path.join(dir, 'config.json');
    writeFileSync(config, JSON.stringify({ capture: { ringBufferBytes: 4096 } }));
    run = await spawnUntilReady(process.execPath, [MAIN, 'run', '--config', config, '--port', String(server.port), '--otlp-endpoint', receiver.endpoint], {
      ready: 'running:', env: { PATH: process.env['PATH'] ?? '', OTEL_BSP_SCHEDULE_DELAY: '100' },
    });
    await burst(server.port, 2000, 32);
    // the sweep runs a second after the loss is seen (later while exports are backed up); then every
    // end has been emitted: wait until nothing has arrived for 2.5 s (two sweeps), at most 30 s
    let seen = -1, since = Date.now();
    for (const end = Date.now() + 30_000; Date.now() < end && Date.now() - since < 2500;) {
      await new Promise((r) => setTimeout(r, 100));
      const n = receiver.spans().length;
      if (n !== seen) { seen = n; since = Date.now(); }
    }
    const beforeStop = receiver.spans().length;
    assert.equal(await run.stop(), 0);
    const line = run.stderr().split('\n').find((l) => l.startsWith('tcpspan: stopped:'))!;
    const spans = receiver.spans();

    const lost = Number(/ringbuf_full (\d+)/.exec(line)?.[1]);
    assert.ok(lost > 0, `the 4 KiB ring lost nothing, so this test shows nothing: ${line}`);
    assert.equal(spans.length, beforeStop, `ends left open until shutdown (flushed as incomplete at stop): ${line}`);
    assert.ok(spans.length <= 4000 && spans.length > 0, `${spans.length} spans`);
    assert.deepEqual(spans.filter((s) => s.attributes['tcpspan.open_before_start'] === true).map((s) => s.attributes['network.local.port']), [],
      'connections made after start mistaken for open before it');
    const incomplete = spans.filter((s) => s.attributes['tcp.close.reason'] === 'incomplete');
    for (const s of incomplete) assert.equal(s.attributes['tcpspan.kernel_events_lost'], true, JSON.stringify(s.attributes));
    const closesLost = Number(/ends whose close was lost: (\d+)/.exec(line)?.[1] ?? 0);
    assert.equal(closesLost, incomplete.length, `every incomplete end is one whose Close was lost, and is counted: ${line}`);
  });
});
