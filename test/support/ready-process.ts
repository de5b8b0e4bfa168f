// Starts a tcpspan command (or any process) and waits for the line that says it is ready.
// Shared by the tests and the benchmarks.
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { once } from 'node:events';

export interface ReadyProcess {
  readonly child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Sends `signal` (SIGTERM by default) and resolves with the exit code. */
  stop(signal?: NodeJS.Signals): Promise<number>;
}

export interface ReadyOptions {
  /** Text on stderr that means the process is ready. */
  ready: string;
  env?: NodeJS.ProcessEnv;
  /** stdout: captured by default; 'ignore' or an fd to discard it. */
  stdout?: 'pipe' | 'ignore' | number;
  timeoutMs?: number;
}

export async function spawnUntilReady(command: string, args: string[], opts: ReadyOptions): Promise<ReadyProcess> {
  const stdio: StdioOptions = ['ignore', opts.stdout ?? 'pipe', 'pipe'];
  const child = spawn(command, args, { stdio, ...(opts.env && { env: opts.env }) });
  let out = '', err = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  while (!err.includes(opts.ready)) {
    if (child.exitCode !== null || Date.now() > deadline) {
      if (child.exitCode === null) child.kill('SIGKILL');
      throw new Error(`${[command, ...args].join(' ')} did not become ready ('${opts.ready}'): ${err.trim() || '(no output)'}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    child, stdout: () => out, stderr: () => err,
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      child.kill(signal);
      const [code] = (await exited) as [number | null];
      return code ?? 128;
    },
  };
}
