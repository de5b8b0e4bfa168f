// A real server process of its own (test/support/accept-server.c, built with gcc on first use):
// its pid and executable name differ from the test runner's, and it accepts with the system
// call a test asks for.
import { execFileSync, spawn, type ChildProcessByStdio } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

const SOURCE = path.resolve(__dirname, '..', '..', '..', 'test', 'support', 'accept-server.c');
export const ACCEPT_SERVER = path.resolve(__dirname, 'accept-server');

export function buildAcceptServer(): string {
  if (!existsSync(ACCEPT_SERVER) || statSync(ACCEPT_SERVER).mtimeMs < statSync(SOURCE).mtimeMs) {
    execFileSync('gcc', ['-O2', '-Wall', '-Werror', '-o', ACCEPT_SERVER, SOURCE], { stdio: ['ignore', 'inherit', 'inherit'] });
  }
  return ACCEPT_SERVER;
}

export interface AcceptServer {
  readonly pid: number;
  readonly port: number;
  /** Resolves with the line once the server printed a line starting with `prefix`. */
  line(prefix: string, timeoutMs?: number): Promise<string>;
  /** Closes its stdin: it closes what it holds and exits. */
  stop(): Promise<void>;
}

export async function startAcceptServer(address: string, opts: { v6only?: boolean; syscall: 'accept' | 'accept4' }): Promise<AcceptServer> {
  const child: ChildProcessByStdio<Writable, Readable, null> = spawn(buildAcceptServer(),
    [address, opts.v6only === false ? '0' : '1', opts.syscall], { stdio: ['pipe', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const line = async (prefix: string, timeoutMs = 15_000): Promise<string> => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const hit = out.split('\n').find((l) => l.startsWith(prefix));
      if (hit !== undefined) return hit;
      if (child.exitCode !== null) throw new Error(`accept-server exited with ${child.exitCode} before printing ${prefix}: ${out}`);
      if (Date.now() > deadline) throw new Error(`accept-server printed no ${prefix} line within ${timeoutMs} ms: ${out}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  };
  const port = Number((await line('port ')).slice(5));
  return {
    pid: child.pid!, port, line,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.stdin.end();
      await exited;
    },
  };
}
