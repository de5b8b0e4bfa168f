// cgroup ids to paths by walking a hierarchy: a temporary directory tree stands in for the
// cgroup2 mount (its directories' inode numbers are the ids, as on cgroup2), with a fake clock.
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createCgroupPaths, findCgroup2Mount } from '../src/attribute/cgroup-paths.js';
import { createCgroupAttributor } from '../src/attribute/cgroup-attribution.js';
import type { ConnectionRecord } from '../src/correlate/connection-record.js';

const ID = 'b'.repeat(64);

describe('createCgroupPaths', () => {
  let root: string;
  let now: number;
  const clock = () => now;
  const mk = (rel: string): number => {
    mkdirSync(path.join(root, rel), { recursive: true });
    return statSync(path.join(root, rel)).ino;
  };

  beforeEach(() => {
    root = mkdtempSync(path.join(tmpdir(), 'tcpspan-cgroups-'));
    now = 10_000;
  });
  afterEach(() => rmSync(root, { recursive: true, force: true }));

  it('should find a cgroup by its directory\'s inode number, walking once for every id known then', () => {
    const a = mk(`system.slice/docker-${ID}.scope`);
    const b = mk('user.slice/user-0.slice');
    const paths = createCgroupPaths({ mount: { mountPoint: root, root: '/' }, now: clock });
    assert.equal(paths.pathOf(a), `/system.slice/docker-${ID}.scope`);
    assert.equal(paths.pathOf(b), '/user.slice/user-0.slice');
    assert.equal(paths.pathOf(statSync(root).ino), '/');
    const s = paths.stats();
    assert.deepEqual({ walks: s.walks, dirs: s.lastWalkDirectories, known: s.known }, { walks: 1, dirs: 5, known: 5 });
  });

  it('should walk again for an unknown id at most once per minRescanMs, and remember ids no later walk found', () => {
    const paths = createCgroupPaths({ mount: { mountPoint: root, root: '/' }, now: clock, minRescanMs: 1000 });
    paths.pathOf(statSync(root).ino); // first walk
    const late = mk('late.slice'); // created after the walk
    now += 500;
    assert.equal(paths.pathOf(late), undefined, 'too soon for another walk');
    now += 500;
    assert.equal(paths.pathOf(late), '/late.slice');
    now += 5000;
    assert.equal(paths.pathOf(999_999_999), undefined, 'not in the hierarchy');
    now += 5000;
    assert.equal(paths.pathOf(999_999_999), undefined, 'remembered as missing: no walk');
    const s = paths.stats();
    assert.deepEqual({ walks: s.walks, misses: s.misses },
      { walks: 3, misses: { no_cgroup2: 0, not_found: 2, rescan_wait: 1, walk_truncated: 0, walk_failed: 0 } });
  });

  it('should keep the path of a cgroup removed since it was found', () => {
    const gone = mk(`docker/${ID}`);
    const paths = createCgroupPaths({ mount: { mountPoint: root, root: '/' }, now: clock });
    assert.equal(paths.pathOf(gone), `/docker/${ID}`);
    const fresh = mk('fresh.slice'); // before the removal: a disk file system may reuse the inode number, cgroup2 never does
    rmSync(path.join(root, 'docker', ID), { recursive: true });
    now += 2000;
    assert.equal(paths.pathOf(fresh), '/fresh.slice'); // a new walk
    assert.equal(paths.pathOf(gone), `/docker/${ID}`);
  });

  it('should stop a walk at maxDirectories and say so', () => {
    for (let i = 0; i < 5; i++) mk(`s${i}`);
    const deep = mk('s4/deeper');
    const paths = createCgroupPaths({ mount: { mountPoint: root, root: '/' }, now: clock, maxDirectories: 3 });
    // depth first from the last entry: s4 and its child may or may not be among the 3; ask for one surely beyond
    const far = statSync(path.join(root, 's0')).ino;
    const got = [paths.pathOf(far), paths.pathOf(deep)];
    assert.ok(got.includes(undefined), 'some directory was beyond the bound');
    assert.ok(paths.stats().misses.walk_truncated >= 1);
    assert.equal(paths.stats().lastWalkDirectories, 3);
  });

  it('should prefix the mount\'s own root (a cgroup namespace) and count a hierarchy it cannot read', () => {
    const a = mk('pod');
    const ns = createCgroupPaths({ mount: { mountPoint: root, root: '/kubepods/burstable' }, now: clock });
    assert.equal(ns.pathOf(a), '/kubepods/burstable/pod');
    const missing = createCgroupPaths({ mount: { mountPoint: path.join(root, 'nope'), root: '/' }, now: clock });
    assert.equal(missing.pathOf(a), undefined);
    const none = createCgroupPaths({ mount: null, now: clock });
    assert.equal(none.pathOf(a), undefined);
    assert.deepEqual([missing.stats().misses.walk_failed, none.stats().misses.no_cgroup2], [1, 1]);
  });
});

describe('findCgroup2Mount', () => {
  it('should take the first cgroup2 line of mountinfo, with its root and escapes', () => {
    const info = [
      '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
      '35 31 0:32 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory',
      '41 31 0:38 /.. /sys/fs/cgroup/uni\\040fied rw,relatime shared:12 master:3 - cgroup2 cgroup2 rw,nsdelegate',
      '42 31 0:39 / /other rw - cgroup2 cgroup2 rw',
    ].join('\n');
    assert.deepEqual(findCgroup2Mount(info), { mountPoint: '/sys/fs/cgroup/uni fied', root: '/..' });
    assert.equal(findCgroup2Mount('31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n'), undefined);
  });
});

describe('createCgroupAttributor', () => {
  it('should fill container.id and k8s.pod.uid from the cgroup path, and leave other records alone', () => {
    const uid = '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f';
    const lookups: number[] = [];
    const attributor = createCgroupAttributor({
      paths: {
        pathOf: (id) => {
          lookups.push(id);
          return id === 1 ? `/kubepods/besteffort/pod${uid}/${ID}` : id === 2 ? '/user.slice' : undefined;
        },
        stats: () => ({ known: 0, missing: 0, walks: 0, lastWalkDirectories: 0,
          misses: { no_cgroup2: 0, not_found: 1, rescan_wait: 0, walk_truncated: 0, walk_failed: 0 } }),
      },
    });
    const rec = (cgroupId: number | undefined) => ({ cgroupId, containerId: undefined, podUid: undefined }) as unknown as ConnectionRecord;
    const [a, again, b, c, none] = [rec(1), rec(1), rec(2), rec(3), rec(undefined)];
    for (const r of [a, again, b, c, none]) attributor.attribute(r);
    assert.deepEqual([a, again, b, c, none].map((r) => [r.containerId, r.podUid]),
      [[ID, uid], [ID, uid], [undefined, undefined], [undefined, undefined], [undefined, undefined]]);
    assert.deepEqual(lookups, [1, 2, 3], 'a known id is looked up once');
    assert.deepEqual(attributor.misses(), { not_found: 1 });
  });
});
