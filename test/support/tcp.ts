// Real TCP traffic for tests: servers in this process, clients in a child process
// (so the two ends have different pids, as in life).
import { spawn } from 'node:child_process';
import net from 'node:net';
import { once } from 'node:events';

export type Family = 4 | 6;
export const LOOPBACK: Record<Family, string> = { 4: '127.0.0.1', 6: '::1' };

export interface ClientResult {
  pid: number;
  localPort: number;
  error?: string;
}

/**
 * Runs a client in a child node process: connects, writes `send` bytes, waits
 * for `expect` bytes, then closes (mode 'close': FIN; 'wait-peer': waits for the
 * peer's FIN first). Resolves with its pid and local port.
 */
export async function runClient(host: string, port: number, opts: { send?: number; expect?: number; mode?: 'close' | 'wait-peer' } = {}): Promise<ClientResult> {
  const script = `
    const net = require('node:net');
    const [host, port, send, expect, mode] = process.argv.slice(1);
    const s = net.connect({ host, port: Number(port) });
    let got = 0, localPort = 0;
    const report = (error) => { process.stdout.write(JSON.stringify({ pid: process.pid, localPort, error })); };
    s.on('connect', () => { localPort = s.localPort; if (Number(send) > 0) s.write(Buffer.alloc(Number(send), 120)); if (Number(expect) === 0 && mode === 'close') s.end(); });
    s.on('data', (d) => { got += d.length; if (got >= Number(expect) && mode === 'close') s.end(); });
    s.on('end', () => { if (mode === 'wait-peer') s.end(); });
    s.on('close', () => report());
    s.on('error', (e) => { report(e.code); process.exit(0); });
  `;
  const child = spawn(process.execPath, ['-e', script, host, String(port), String(opts.send ?? 0), String(opts.expect ?? 0), opts.mode ?? 'close'], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const [code] = (await once(child, 'exit')) as [number];
  if (code !== 0) throw new Error(`test client exited with ${code}`);
  return JSON.parse(out) as ClientResult;
}

export interface TestServer {
  port: number;
  /** Server-side sockets, in accept order. */
  sockets: net.Socket[];
  close(): Promise<void>;
}

/** A server that answers each connection's first data with `reply` bytes and closes after the peer does (after `closeDelayMs`). */
export async function startServer(family: Family, opts: { reply?: number; closeDelayMs?: number; onConnection?: (s: net.Socket) => void } = {}): Promise<TestServer> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => {});
    if (opts.onConnection) return opts.onConnection(s);
    s.once('data', () => { if (opts.reply) s.write(Buffer.alloc(opts.reply, 121)); });
    s.on('end', () => setTimeout(() => s.end(), opts.closeDelayMs ?? 50));
  });
  server.listen(0, LOOPBACK[family]);
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  return {
    port, sockets,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/** A port with nothing listening (found by binding and closing). */
export async function closedPort(family: Family): Promise<number> {
  const server = net.createServer().listen(0, LOOPBACK[family]);
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

/** n sequential connections from this process: send 5 bytes, read 3, close. Returns the client ports. */
export async function connectMany(family: Family, port: number, n: number): Promise<number[]> {
  const ports: number[] = [];
  for (let i = 0; i < n; i++) {
    const s = net.connect(port, LOOPBACK[family]);
    await once(s, 'connect');
    ports.push(s.localPort!);
    s.write('hello');
    await once(s, 'data');
    s.end();
    await once(s, 'close');
  }
  return ports;
}
