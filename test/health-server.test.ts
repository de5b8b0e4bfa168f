// The health endpoints' server on its own: routes, readiness text, listen errors, close.
import assert from 'node:assert/strict';
import net from 'node:net';
import { startHealthServer, type HealthServer } from '../src/cli/health-server.js';
import { closedPort } from './support/tcp.js';

async function get(address: string, path: string, method = 'GET'): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${address}${path}`, { method });
  return { status: res.status, body: await res.text() };
}

describe('HealthServer', () => {
  let server: HealthServer | undefined;
  afterEach(async () => { await server?.close(); server = undefined; });

  it('should answer /healthz with 200 and /readyz with 200 or 503 and the reason, as it changes', async () => {
    let why: string | undefined = 'programs not attached yet';
    const port = await closedPort(4);
    server = await startHealthServer(`127.0.0.1:${port}`, () => why);
    assert.equal(server.address, `127.0.0.1:${port}`);
    assert.deepEqual(await get(server.address, '/healthz'), { status: 200, body: 'ok\n' });
    assert.deepEqual(await get(server.address, '/readyz'), { status: 503, body: 'not ready: programs not attached yet\n' });
    why = undefined;
    assert.deepEqual(await get(server.address, '/readyz?verbose'), { status: 200, body: 'ready\n' });
    assert.equal((await get(server.address, '/readyz', 'HEAD')).status, 200);
  });

  it('should answer a readiness check that throws with 503, and other paths and methods with 404 and 405', async () => {
    server = await startHealthServer(`127.0.0.1:${await closedPort(4)}`, () => { throw new Error('boom'); });
    assert.deepEqual(await get(server.address, '/readyz'), { status: 503, body: 'not ready: readiness check failed: boom\n' });
    assert.equal((await get(server.address, '/')).status, 404);
    assert.equal((await get(server.address, '/metrics')).status, 404);
    assert.equal((await get(server.address, '/healthz', 'POST')).status, 405);
  });

  it('should listen on IPv6 loopback in brackets', async () => {
    const port = await closedPort(6);
    server = await startHealthServer(`[::1]:${port}`, () => undefined);
    assert.equal(server.address, `[::1]:${port}`);
    assert.equal((await get(server.address, '/healthz')).status, 200);
  });

  it('should reject a port in use with EADDRINUSE', async () => {
    const port = await closedPort(4);
    server = await startHealthServer(`127.0.0.1:${port}`, () => undefined);
    await assert.rejects(startHealthServer(`127.0.0.1:${port}`, () => undefined), { code: 'EADDRINUSE' });
  });

  it('should free its port on close, keep-alive connections included, and close twice', async () => {
    const port = await closedPort(4);
    const s = await startHealthServer(`127.0.0.1:${port}`, () => undefined);
    const agent = net.connect(port, '127.0.0.1'); // an idle keep-alive probe connection
    await new Promise((r) => agent.once('connect', r));
    agent.write('GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await new Promise((r) => agent.once('data', r));
    const t0 = Date.now();
    await Promise.all([s.close(), s.close()]);
    assert.ok(Date.now() - t0 < 3000, 'close waited for the idle connection (its keep-alive timeout is 5 s)');
    const again = net.createServer();
    await new Promise<void>((resolve, reject) => { again.once('error', reject); again.listen(port, '127.0.0.1', resolve); });
    await new Promise<void>((resolve) => again.close(() => resolve()));
    agent.destroy();
  });
});
