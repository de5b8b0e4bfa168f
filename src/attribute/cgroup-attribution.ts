// The attribution stage: between correlation and export, each finished connection end's
// cgroup id becomes container.id and k8s.pod.uid (cgroup-paths.ts finds the path,
// container-id.ts reads the ids from it). One map lookup per span once an id is known.
import type { ConnectionRecord } from '../correlate/connection-record.js';
import { createCgroupPaths, type CgroupPaths, type CgroupPathsOptions } from './cgroup-paths.js';
import { parseCgroupPath, type CgroupAttribution } from './container-id.js';

/** What attribution reads and fills. */
export type Attributable = Pick<ConnectionRecord, 'cgroupId' | 'containerId' | 'podUid'>;

export interface Attributor {
  /** Fills the record's containerId and podUid from its cgroupId when they are known (a final record or a checkpoint). Never throws. */
  attribute(rec: Attributable): void;
  /** Lookups that found no cgroup path, by reason (cgroup-paths.ts); zero counts left out. */
  misses(): Record<string, number>;
}

export function createCgroupAttributor(opts: CgroupPathsOptions & { paths?: CgroupPaths } = {}): Attributor {
  return new CgroupAttributor(opts.paths ?? createCgroupPaths(opts), opts.maxDirectories ?? 65536);
}

class CgroupAttributor implements Attributor {
  private readonly _byId = new Map<number, CgroupAttribution>();
  private _errors = 0;

  constructor(private readonly _paths: CgroupPaths, private readonly _max: number) {}

  attribute(rec: Attributable): void {
    const id = rec.cgroupId;
    if (id === undefined) return;
    try {
      let a = this._byId.get(id);
      if (a === undefined) {
        const p = this._paths.pathOf(id);
        if (p === undefined) return; // counted by the paths
        a = parseCgroupPath(p);
        if (this._byId.size >= this._max) this._byId.clear();
        this._byId.set(id, a);
      }
      if (a.containerId !== undefined) rec.containerId = a.containerId;
      if (a.podUid !== undefined) rec.podUid = a.podUid;
    } catch {
      this._errors++;
    }
  }

  misses(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [reason, n] of Object.entries(this._paths.stats().misses)) if (n > 0) out[reason] = n;
    if (this._errors > 0) out['internal_error'] = this._errors;
    return out;
  }
}
