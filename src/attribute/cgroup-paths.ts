// A cgroup v2 id (what the kernel puts in each connection record) to the cgroup's path.
//
// On cgroup v2 a cgroup's id is its directory's inode number, so the map is made by walking
// the cgroup2 mount and stat-ing each directory. Walks are bounded (maxDirectories) and run
// only when an id is not known, at most once per minRescanMs; ids a walk did not find are
// remembered as missing (cgroup ids are never reused, so a walk after the id was seen that
// misses it means the cgroup is gone). Paths of removed cgroups are kept while there is room,
// for the connections that outlive their container. Nothing here throws: a lookup that
// finds nothing is counted with its reason.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

export interface Cgroup2Mount {
  /** where the hierarchy is mounted, e.g. /sys/fs/cgroup or /sys/fs/cgroup/unified */
  readonly mountPoint: string;
  /** the cgroup the mount shows as its root ('/' unless tcpspan runs in a cgroup namespace) */
  readonly root: string;
}

/** Why an id got no path. */
export type CgroupMiss =
  | 'no_cgroup2' //      no cgroup v2 hierarchy is mounted
  | 'not_found' //       a walk made after the id was seen did not find it (removed, or outside the mount)
  | 'rescan_wait' //     not known, and the last walk was less than minRescanMs ago
  | 'walk_truncated' //  not found by a walk that stopped at maxDirectories
  | 'walk_failed'; //    the walk could not read the mount point

export const CGROUP_MISSES: readonly CgroupMiss[] = ['no_cgroup2', 'not_found', 'rescan_wait', 'walk_truncated', 'walk_failed'];

export interface CgroupPathsStats {
  /** ids with a known path */
  known: number;
  /** ids remembered as missing */
  missing: number;
  walks: number;
  /** directories stat-ed by the last walk */
  lastWalkDirectories: number;
  misses: Record<CgroupMiss, number>;
}

export interface CgroupPaths {
  /** The cgroup's path from the hierarchy's root ('/' for the root), or undefined (counted). Never throws. */
  pathOf(id: number): string | undefined;
  stats(): CgroupPathsStats;
}

export interface CgroupPathsOptions {
  /** the hierarchy to walk; default: the first cgroup2 mount in /proc/self/mountinfo (none: every lookup misses) */
  mount?: Cgroup2Mount | null;
  /** directories one walk visits at most, and ids kept at most (default 65,536) */
  maxDirectories?: number;
  /** a walk at most this often (default 1,000 ms) */
  minRescanMs?: number;
  /** milliseconds, for tests (default: performance.now) */
  now?: () => number;
}

export function createCgroupPaths(opts: CgroupPathsOptions = {}): CgroupPaths {
  return new WalkedCgroupPaths(opts.mount === undefined ? findCgroup2Mount() : opts.mount ?? undefined,
    opts.maxDirectories ?? 65536, opts.minRescanMs ?? 1000, opts.now ?? (() => performance.now()));
}

/** The first cgroup2 mount in /proc/self/mountinfo (or in `text`); undefined when there is none. */
export function findCgroup2Mount(text?: string): Cgroup2Mount | undefined {
  let info = text;
  if (info === undefined) {
    try {
      info = readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      return undefined; // no /proc: as no cgroup v2
    }
  }
  for (const line of info.split('\n')) {
    // id parent major:minor root mount-point options [optional fields...] - fstype source super-options
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fields = line.slice(0, sep).split(' ');
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype !== 'cgroup2' || fields.length < 5) continue;
    return { root: unescapeMountField(fields[3]!), mountPoint: unescapeMountField(fields[4]!) };
  }
  return undefined;
}

/** mountinfo writes space, tab, newline and backslash as \040, \011, \012, \134. */
function unescapeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

class WalkedCgroupPaths implements CgroupPaths {
  private _paths = new Map<number, string>();
  private readonly _missing = new Set<number>();
  private _lastWalk = -Infinity;
  private _walks = 0;
  private _lastWalkDirectories = 0;
  private _truncated = false;
  private readonly _misses: Record<CgroupMiss, number>;

  constructor(private readonly _mount: Cgroup2Mount | undefined, private readonly _max: number,
              private readonly _minRescanMs: number, private readonly _now: () => number) {
    this._misses = Object.fromEntries(CGROUP_MISSES.map((r) => [r, 0])) as Record<CgroupMiss, number>;
  }

  pathOf(id: number): string | undefined {
    const known = this._paths.get(id);
    if (known !== undefined) return known;
    if (this._mount === undefined) return this._miss('no_cgroup2');
    if (this._missing.has(id)) return this._miss('not_found');
    const now = this._now();
    if (now - this._lastWalk < this._minRescanMs) return this._miss('rescan_wait');
    this._lastWalk = now;
    if (!this._walk(this._mount)) return this._miss('walk_failed');
    const found = this._paths.get(id);
    if (found !== undefined) return found;
    if (this._truncated) return this._miss('walk_truncated'); // perhaps beyond the bound: not remembered as missing
    if (this._missing.size >= this._max) this._missing.clear();
    this._missing.add(id);
    return this._miss('not_found');
  }

  stats(): CgroupPathsStats {
    return {
      known: this._paths.size, missing: this._missing.size, walks: this._walks,
      lastWalkDirectories: this._lastWalkDirectories, misses: { ...this._misses },
    };
  }

  private _miss(reason: CgroupMiss): undefined {
    this._misses[reason]++;
    return undefined;
  }

  /** Walks the whole mount into a new map; false when its root cannot be read. */
  private _walk(mount: Cgroup2Mount): boolean {
    const fresh = new Map<number, string>();
    const prefix = mount.root === '/' ? '' : mount.root.replace(/\/+$/, '');
    this._walks++;
    this._truncated = false;
    let visited = 0;
    const stack: string[] = [''];
    while (stack.length > 0) {
      const rel = stack.pop()!;
      const dir = rel === '' ? mount.mountPoint : path.join(mount.mountPoint, rel);
      let ino: number;
      let entries;
      try {
        ino = statSync(dir).ino;
        entries = readdirSync(dir, { withFileTypes: true });
      } catch {
        if (rel === '') return false;
        continue; // removed while walking
      }
      fresh.set(ino, rel === '' ? (prefix || '/') : `${prefix}/${rel}`);
      if (++visited >= this._max) {
        this._truncated = stack.length > 0 || entries.some((e) => e.isDirectory());
        break;
      }
      for (const e of entries) if (e.isDirectory()) stack.push(rel === '' ? e.name : `${rel}/${e.name}`);
    }
    this._lastWalkDirectories = visited;
    // cgroups removed since the last walk keep their path while there is room: their connections may still close
    for (const [id, p] of this._paths) {
      if (fresh.size >= this._max) break;
      if (!fresh.has(id)) fresh.set(id, p);
    }
    this._paths = fresh;
    return true;
  }
}
