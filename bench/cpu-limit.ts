// A CPU bandwidth limit for one process: a fraction of a core, through the cgroup cpu controller.
// cgroup v2 when its root offers the cpu controller (cpu.max), else the v1 cpu hierarchy
// (cpu.cfs_quota_us): on these machines cgroup2 (/sys/fs/cgroup/unified) holds only hugetlb and
// the cpu controller is mounted as v1 at /sys/fs/cgroup/cpu.
import { existsSync, mkdirSync, readdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

const PERIOD_US = 100_000;
const PREFIX = 'tcpspan-bench-';

export interface CpuLimit {
  readonly dir: string;
  readonly how: string;
  /** Moves a process (all its threads) into the limited group. */
  add(pid: number): void;
  /** Enforcement periods so far, and in how many the group was throttled (cpu.stat). */
  throttling(): { periods: number; throttled: number };
  /** Moves what is left back to the root and removes the group. Safe to call twice. */
  remove(): void;
}

function mounts(): { dir: string; type: string; opts: string[] }[] {
  return readFileSync('/proc/self/mounts', 'utf8').trim().split('\n').map((l) => {
    const [, dir, type, opts] = l.split(' ');
    return { dir: dir!, type: type!, opts: (opts ?? '').split(',') };
  });
}

/** Groups left by a run that crashed: removed when empty. */
function removeStale(root: string): void {
  for (const name of readdirSync(root)) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.slice(PREFIX.length));
    if (existsSync(`/proc/${pid}`)) continue;
    try { rmdirSync(path.join(root, name)); } catch { /* still has tasks: leave it */ }
  }
}

export function createCpuLimit(shareOfOneCore: number): CpuLimit {
  const quota = Math.max(1000, Math.round(shareOfOneCore * PERIOD_US));
  const v2 = mounts().find((m) => m.type === 'cgroup2');
  if (v2 && readFileSync(path.join(v2.dir, 'cgroup.controllers'), 'utf8').split(/\s+/).includes('cpu')) {
    const sub = readFileSync(path.join(v2.dir, 'cgroup.subtree_control'), 'utf8');
    if (!sub.split(/\s+/).includes('cpu')) writeFileSync(path.join(v2.dir, 'cgroup.subtree_control'), '+cpu');
    removeStale(v2.dir);
    const dir = path.join(v2.dir, `${PREFIX}${process.pid}`);
    mkdirSync(dir, { recursive: true });
    writeFileSync(path.join(dir, 'cpu.max'), `${quota} ${PERIOD_US}`);
    return group(dir, path.join(v2.dir, 'cgroup.procs'), `cgroup v2 ${dir}/cpu.max = ${quota} ${PERIOD_US}`);
  }
  const v1 = mounts().find((m) => m.type === 'cgroup' && m.opts.includes('cpu'));
  if (!v1) throw new Error('bench: no cgroup cpu controller is mounted (neither cgroup v2 with cpu nor v1 cpu): cannot limit tcpspan to a fraction of a core');
  removeStale(v1.dir);
  const dir = path.join(v1.dir, `${PREFIX}${process.pid}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(path.join(dir, 'cpu.cfs_period_us'), String(PERIOD_US));
  writeFileSync(path.join(dir, 'cpu.cfs_quota_us'), String(quota));
  return group(dir, path.join(v1.dir, 'cgroup.procs'), `cgroup v1 ${dir}: cpu.cfs_quota_us ${quota} per cpu.cfs_period_us ${PERIOD_US}`);
}

function group(dir: string, rootProcs: string, how: string): CpuLimit {
  let removed = false;
  return {
    dir, how,
    throttling: () => {
      const stat = readFileSync(path.join(dir, 'cpu.stat'), 'utf8');
      const field = (k: string): number => Number(new RegExp(`^${k} (\\d+)`, 'm').exec(stat)?.[1] ?? NaN);
      return { periods: field('nr_periods'), throttled: field('nr_throttled') };
    },
    add: (pid) => writeFileSync(path.join(dir, 'cgroup.procs'), String(pid)),
    remove: () => {
      if (removed) return;
      removed = true;
      for (const pid of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try { writeFileSync(rootProcs, pid); } catch { /* exited meanwhile */ }
      }
      try { rmdirSync(dir); } catch { /* a task is still exiting: the next run removes it */ }
    },
  };
}
