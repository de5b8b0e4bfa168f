// What attribution.serviceFromProcess costs per lookup: a read of /proc/PID/environ (the
// cache's miss), the parse alone, and a cache hit. Prints figures, asserts nothing.
//
//   node dist/bench/process-service-bench.js
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createProcessServices, serviceFromEnviron } from '../src/attribute/process-service.js';

function perCall(n: number, fn: (i: number) => unknown): number {
  for (let i = 0; i < Math.min(n, 1000); i++) fn(i); // warm-up
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) fn(i);
  return Number(process.hrtime.bigint() - t0) / n / 1000;
}

async function main(): Promise<void> {
  // a process with an environment of a typical size: this one's, plus the service variables
  const env = { ...process.env, OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment.name=prod,service.version=1.2.3', OTEL_SERVICE_NAME: 'checkout' };
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { env, stdio: 'ignore' });
  await once(child, 'spawn');
  const pid = child.pid!;
  const environ = readFileSync(`/proc/${pid}/environ`);
  try {
    const uncached = createProcessServices({ ttlMs: 0 });
    const cached = createProcessServices();
    const miss = perCall(20_000, () => uncached.lookup(pid));
    const parse = perCall(200_000, () => serviceFromEnviron(environ));
    const hit = perCall(2_000_000, () => cached.lookup(pid));
    const gone = createProcessServices({ ttlMs: 0 });
    const missGone = perCall(20_000, (i) => gone.lookup(4_000_000 + i)); // no such pids
    process.stdout.write(
      `process-service: environ ${environ.length} bytes (${Object.keys(env).length} variables)\n` +
      `  uncached lookup (read /proc/PID/environ + parse): ${miss.toFixed(2)} µs\n` +
      `  parse alone:                                     ${parse.toFixed(2)} µs\n` +
      `  uncached lookup of a vanished pid (ENOENT):      ${missGone.toFixed(2)} µs\n` +
      `  cached lookup:                                   ${(hit * 1000).toFixed(0)} ns\n`);
  } finally {
    child.kill();
  }
}

void main();
