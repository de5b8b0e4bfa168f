// `tcpspan run`'s health endpoints for an orchestrator's probes (health.listen):
//   GET /healthz  200 while the process turns its event loop (liveness)
//   GET /readyz   200 while it captures and exports, else 503 with the reason (readiness)
// Plain node:http, text bodies, nothing else served.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseListen } from '../config/config.js';

/** Why tcpspan is not ready, in a few words ("programs not attached yet"), or undefined when it is. */
export type Readiness = () => string | undefined;

export interface HealthServer {
  /** host:port it listens on */
  readonly address: string;
  /** Stops listening and ends open connections (keep-alive probes included). Idempotent. */
  close(): Promise<void>;
}

/**
 * Listens on `listen` (host:port). Rejects with the listen error (EADDRINUSE, EACCES,
 * EADDRNOTAVAIL, ENOTFOUND) so the caller can refuse the setting before anything starts.
 */
export async function startHealthServer(listen: string, ready: Readiness): Promise<HealthServer> {
  const { host, port } = parseListen(listen);
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/healthz' && path !== '/readyz') return reply(res, 404, 'not found: try /healthz or /readyz');
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('Allow', 'GET, HEAD');
      return reply(res, 405, 'method not allowed: use GET');
    }
    if (path === '/healthz') return reply(res, 200, 'ok');
    let why: string | undefined;
    try {
      why = ready();
    } catch (err) {
      why = `readiness check failed: ${(err as Error).message}`;
    }
    return why === undefined ? reply(res, 200, 'ready') : reply(res, 503, `not ready: ${why}`);
  });
  // probes are short; an idle keep-alive connection must not hold shutdown up
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 10_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', () => undefined); // after listen, errors belong to single connections
  const a = server.address() as AddressInfo;
  let closed: Promise<void> | undefined;
  return {
    address: a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`,
    close: () => (closed ??= new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    })),
  };
}

function reply(res: http.ServerResponse, status: number, text: string): void {
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(`${text}\n`);
}
