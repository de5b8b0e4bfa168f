// The socket end of the fidelity run: one of these runs inside each lab namespace
// (`ip netns exec NS node dist/bench/fidelity/agent.js`) and opens, feeds, shuts and resets
// real sockets on command. Commands are JSON lines on stdin, replies and socket events JSON
// lines on stdout; each command names the socket it acts on by an id the orchestrator chose
// (servers name the sockets they accept `<listener id>.<n>`).
//
// Plain node:net only, so what the kernel sees is what an ordinary Node application does.
import net from 'node:net';
import { createInterface } from 'node:readline';

export type Command =
  | { op: 'listen'; id: string; host: string; port: number; /** end our side when the peer's FIN arrives */ autoEnd: boolean;
      /** bytes to answer each accepted socket's first data with */ reply?: number }
  | { op: 'connect'; id: string; host: string; port: number; localPort?: number }
  | { op: 'write'; id: string; bytes: number }
  | { op: 'end'; id: string }
  | { op: 'reset'; id: string }
  | { op: 'counts'; id: string }
  | { op: 'burst'; id: string; host: string; port: number; total: number; concurrency: number; send: number; expect: number }
  | { op: 'exit' };

export type Reply =
  | { ev: 'ready' }
  | { ev: 'listening'; id: string; port: number }
  | { ev: 'accepted'; id: string; remotePort: number }
  | { ev: 'connected'; id: string; localPort: number }
  | { ev: 'written'; id: string; total: number }
  | { ev: 'counts'; id: string; read: number; written: number }
  | { ev: 'peer-end'; id: string }
  | { ev: 'close'; id: string; read: number; written: number; error?: string }
  | { ev: 'burst-done'; id: string; ok: number; failed: number; errors: string[]; ports: number[] }
  | { ev: 'fail'; id: string; error: string };

const say = (m: Reply): void => { process.stdout.write(`${JSON.stringify(m)}\n`); };

interface Tracked { sock: net.Socket; read: number; written: number; error?: string }
const sockets = new Map<string, Tracked>();
const CHUNK = Buffer.alloc(64 * 1024, 0x5a);

function track(id: string, sock: net.Socket, autoEnd: boolean): Tracked {
  const t: Tracked = { sock, read: 0, written: 0 };
  sockets.set(id, t);
  sock.on('data', (d: Buffer) => { t.read += d.length; });
  sock.on('end', () => {
    say({ ev: 'peer-end', id });
    if (autoEnd) sock.end();
  });
  sock.on('error', (e: NodeJS.ErrnoException) => { t.error = e.code ?? e.message; });
  sock.on('close', () => say({ ev: 'close', id, read: t.read, written: t.written, ...(t.error && { error: t.error }) }));
  return t;
}

function write(id: string, t: Tracked, total: number): void {
  let left = total;
  const pump = (): void => {
    while (left > 0) {
      const n = Math.min(CHUNK.length, left);
      left -= n;
      t.written += n;
      if (!t.sock.write(n === CHUNK.length ? CHUNK : CHUNK.subarray(0, n))) { t.sock.once('drain', pump); return; }
    }
    say({ ev: 'written', id, total: t.written });
  };
  pump();
}

/** `total` connections, `concurrency` at a time opened together: each sends, reads its answer, closes. */
async function burst(c: Extract<Command, { op: 'burst' }>): Promise<void> {
  let ok = 0, failed = 0;
  const errors = new Set<string>();
  const ports: number[] = [];
  const one = (): Promise<void> => new Promise((resolve) => {
    const s = net.connect({ host: c.host, port: c.port, allowHalfOpen: true });
    let got = 0;
    s.on('connect', () => { ports.push(s.localPort!); s.write(CHUNK.subarray(0, c.send)); });
    s.on('data', (d: Buffer) => { got += d.length; if (got >= c.expect) s.end(); });
    s.on('end', () => s.end());
    s.on('error', (e: NodeJS.ErrnoException) => { errors.add(e.code ?? e.message); });
    s.on('close', (hadError) => { if (hadError || got < c.expect) failed++; else ok++; resolve(); });
  });
  for (let done = 0; done < c.total; done += c.concurrency) {
    await Promise.all(Array.from({ length: Math.min(c.concurrency, c.total - done) }, one));
  }
  say({ ev: 'burst-done', id: c.id, ok, failed, errors: [...errors], ports });
}

function handle(c: Command): void {
  if (c.op === 'exit') process.exit(0);
  if (c.op === 'listen') {
    let n = 0;
    const srv = net.createServer({ allowHalfOpen: true }, (sock) => {
      const id = `${c.id}.${n++}`;
      const t = track(id, sock, c.autoEnd);
      if (c.reply) sock.once('data', () => write(id, t, c.reply!));
      say({ ev: 'accepted', id, remotePort: sock.remotePort! });
    });
    srv.on('error', (e) => say({ ev: 'fail', id: c.id, error: e.message }));
    srv.listen({ host: c.host, port: c.port, backlog: 4096 }, () => say({ ev: 'listening', id: c.id, port: (srv.address() as net.AddressInfo).port }));
    return;
  }
  if (c.op === 'connect') {
    const sock = net.connect({ host: c.host, port: c.port, allowHalfOpen: true, ...(c.localPort && { localPort: c.localPort }) });
    const t = track(c.id, sock, false);
    sock.on('connect', () => say({ ev: 'connected', id: c.id, localPort: sock.localPort! }));
    void t;
    return;
  }
  if (c.op === 'burst') { void burst(c); return; }
  const t = sockets.get(c.id);
  if (!t) { say({ ev: 'fail', id: c.id, error: `no socket ${c.id}` }); return; }
  if (c.op === 'write') write(c.id, t, c.bytes);
  else if (c.op === 'end') t.sock.end();
  else if (c.op === 'reset') t.sock.resetAndDestroy();
  else if (c.op === 'counts') say({ ev: 'counts', id: c.id, read: t.read, written: t.written });
}

createInterface({ input: process.stdin }).on('line', (line) => {
  try {
    handle(JSON.parse(line) as Command);
  } catch (err) {
    say({ ev: 'fail', id: '', error: (err as Error).message });
  }
});
process.stdin.on('end', () => process.exit(0));
say({ ev: 'ready' });
