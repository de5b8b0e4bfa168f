// The processes the bench starts that would outlive it (tracers hold BPF programs attached):
// stopped when the bench itself is interrupted.
import type { ChildProcess } from 'node:child_process';

const live = new Set<ChildProcess>();

export function track<T extends ChildProcess>(child: T): T {
  live.add(child);
  child.once('exit', () => live.delete(child));
  return child;
}

/** SIGINT to every live child (each tracer flushes and detaches), SIGKILL to what is left after `graceMs`. */
export async function stopAll(graceMs: number): Promise<void> {
  for (const c of live) c.kill('SIGINT');
  const deadline = Date.now() + graceMs;
  while (live.size && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  for (const c of live) c.kill('SIGKILL');
}
