// What a tracer has loaded into the kernel, seen from outside it (bpftool), so the bench depends
// on no tcpspan internals: its programs and maps, the ring buffer's producer position (bytes
// the kernel has written), and what one socket-storage element costs.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import koffi from 'koffi';

export interface MapInfo {
  id: number;
  type: string;
  name: string;
  bytes_key: number;
  bytes_value: number;
  max_entries: number;
  bytes_memlock: number;
}

interface ProgInfo { id: number; type: string; name?: string; map_ids?: number[]; run_time_ns?: number; run_cnt?: number }
interface PerfAttachment { pid: number; prog_id: number; fd_type: string; tracepoint?: string }

export function bpftool<T>(args: string[]): T {
  return JSON.parse(execFileSync('bpftool', [...args, '-j'], { encoding: 'utf8', maxBuffer: 64 << 20 }) || 'null') as T;
}

/** Tracepoint attachments (perf-event and raw) held by each process. */
export function tracepointAttachments(): PerfAttachment[] {
  return bpftool<PerfAttachment[] | null>(['perf', 'show']) ?? [];
}

/** True once `pid` holds a program attached to the sock:inet_sock_set_state tracepoint. */
export function hasAttachedStateTracepoint(pid: number): boolean {
  return tracepointAttachments().some((a) => a.pid === pid && a.tracepoint === 'inet_sock_set_state');
}

/** Other processes' programs on sock:inet_sock_set_state: they run on every event too and inflate a run's cost. */
export function foreignStateTracers(ownPid?: number): number[] {
  const pids = tracepointAttachments().filter((a) => a.tracepoint === 'inet_sock_set_state' && a.pid !== ownPid).map((a) => a.pid);
  return [...new Set(pids)];
}

/**
 * The BPF programs and maps a process holds, from its descriptors' fdinfo (prog_id, map_id lines):
 * exact per process, whatever the attach type (tracepoint, raw/BTF tracepoint, cgroup link).
 */
function bpfIdsOf(pid: number): { progs: Set<number>; maps: Set<number> } {
  const progs = new Set<number>(), maps = new Set<number>();
  const dir = `/proc/${pid}/fdinfo`;
  for (const fd of readdirSync(dir)) {
    let info: string;
    try { info = readFileSync(`${dir}/${fd}`, 'utf8'); } catch { continue; } // closed meanwhile
    for (const m of info.matchAll(/^(prog_id|map_id):\s*(\d+)$/gm)) (m[1] === 'prog_id' ? progs : maps).add(Number(m[2]));
  }
  return { progs, maps };
}

export function programsOf(pid: number): ProgInfo[] {
  const { progs } = bpfIdsOf(pid);
  return bpftool<ProgInfo[]>(['prog', 'show']).filter((p) => progs.has(p.id));
}

export function mapsOf(pid: number): MapInfo[] {
  const { progs, maps } = bpfIdsOf(pid);
  for (const p of bpftool<ProgInfo[]>(['prog', 'show'])) if (progs.has(p.id)) for (const m of p.map_ids ?? []) maps.add(m);
  return bpftool<MapInfo[]>(['map', 'show']).filter((m) => maps.has(m.id));
}

// ---------------------------------------------------------------- ring buffer producer position

let libs: { getFdById: (id: number) => number; mmap: (a: null, len: number, prot: number, flags: number, fd: number, off: number) => bigint;
  munmap: (p: bigint, len: number) => number; close: (fd: number) => number; pageSize: number } | undefined;

function load(): NonNullable<typeof libs> {
  if (libs) return libs;
  const libbpf = koffi.load('libbpf.so.1');
  const libc = koffi.load('libc.so.6');
  libs = {
    getFdById: libbpf.func('int bpf_map_get_fd_by_id(uint32_t id)') as (id: number) => number,
    mmap: libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)') as NonNullable<typeof libs>['mmap'],
    munmap: libc.func('int munmap(void *addr, size_t len)') as NonNullable<typeof libs>['munmap'],
    close: libc.func('int close(int fd)') as (fd: number) => number,
    pageSize: (libc.func('int getpagesize()') as () => number)(),
  };
  return libs;
}

export interface RingPosition {
  /** Bytes the kernel has written into the ring so far (records, 8-byte headers and padding included). */
  produced(): number;
  close(): void;
}

/**
 * The producer position of a BPF ring buffer, read from its second page (mapped read-only from
 * another process by map id). It counts every byte reserved, whatever the record layout, so
 * it stays right when the record format changes.
 */
export function openRingPosition(mapId: number): RingPosition {
  const l = load();
  const fd = l.getFdById(mapId);
  if (fd < 0) throw new Error(`bench: cannot open BPF map ${mapId} (${fd}): did the tracer exit?`);
  const PROT_READ = 1, MAP_SHARED = 1;
  const page = l.mmap(null, l.pageSize, PROT_READ, MAP_SHARED, fd, l.pageSize);
  if (page === 0xffffffffffffffffn || !page) {
    l.close(fd);
    throw new Error(`bench: cannot map the producer page of ring buffer ${mapId}`);
  }
  let open = true;
  return {
    produced: () => Number(koffi.decode(page, 'uint64_t')),
    close: () => {
      if (!open) return;
      open = false;
      l.munmap(page, l.pageSize);
      l.close(fd);
    },
  };
}

// ---------------------------------------------------------------- socket storage cost

/**
 * kmalloc's size classes: an allocation takes the smallest that fits. (Where local storage uses
 * the BPF memory allocator instead, its units follow the same classes after an 8-byte header;
 * for the sizes here, 144 and 176 B, the class is 192 B either way.)
 */
const KMALLOC_CLASSES = [8, 16, 32, 64, 96, 128, 192, 256, 512, 1024, 2048, 4096, 8192];
export const kmallocSize = (n: number): number => KMALLOC_CLASSES.find((c) => c >= n) ?? Math.ceil(n / 4096) * 4096;

export interface SkStorageCost {
  /** value bytes of each socket-storage map of the tracer */
  valueBytes: number[];
  /** offsetof(struct bpf_local_storage_elem, sdata.data): the element's header */
  elemHeaderBytes: number;
  /** kmalloc'ed bytes per socket for the elements of those maps */
  elemBytes: number;
  /** sizeof(struct bpf_local_storage): one per socket that has any storage */
  ownerBytes: number;
  ownerAllocBytes: number;
  /** elemBytes + ownerAllocBytes */
  perSocketBytes: number;
  how: string;
}

/**
 * Kernel memory per socket for `maps`' socket storage: each map's element is kmalloc'ed as
 * offsetof(struct bpf_local_storage_elem, sdata.data) + value_size (kernel/bpf/bpf_local_storage.c,
 * smap->elem_size), and a socket with any storage also has one struct bpf_local_storage
 * (shared by all maps storing on that socket; charged here in full, as no other user is assumed).
 * Struct layouts come from the running kernel's BTF.
 */
/** A struct of the running kernel, from its BTF: size and member offsets. */
function kernelStruct(name: string): { size: number; members: Map<string, number> } {
  const btf = vmlinuxBtf ??= execFileSync('bpftool', ['btf', 'dump', 'file', '/sys/kernel/btf/vmlinux'], { encoding: 'utf8', maxBuffer: 256 << 20 });
  const at = btf.indexOf(`STRUCT '${name}' size=`);
  if (at < 0) throw new Error(`bench: struct ${name} not in the kernel's BTF`);
  const lines = btf.slice(at, btf.indexOf('\n[', at)).split('\n');
  const size = Number(/size=(\d+)/.exec(lines[0]!)![1]);
  const members = new Map<string, number>();
  for (const l of lines.slice(1)) {
    const m = /'([^']*)' type_id=\d+ bits_offset=(\d+)/.exec(l);
    if (m) members.set(m[1]!, Number(m[2]) / 8);
  }
  return { size, members };
}
let vmlinuxBtf: string | undefined;

/**
 * Kernel memory per tracked connection end for a preallocated hash of lives (tcpspan's
 * `lives`): one element, sizeof(struct htab_elem) + key + value rounded to 8 bytes
 * (kernel/bpf/hashtab.c, htab->elem_size); the whole map is allocated at load (max_entries
 * elements), so it is also a fixed cost.
 */
export function hashLifeCost(maps: MapInfo[]): SkStorageCost | undefined {
  const lives = maps.find((m) => m.type === 'hash' && m.name === 'lives');
  if (!lives) return undefined;
  const header = kernelStruct('htab_elem').size;
  const round8 = (n: number) => Math.ceil(n / 8) * 8;
  const elem = header + round8(lives.bytes_key) + round8(lives.bytes_value);
  return {
    valueBytes: [lives.bytes_value], elemHeaderBytes: header, elemBytes: elem, ownerBytes: 0, ownerAllocBytes: 0,
    perSocketBytes: elem,
    how: `one element of the preallocated hash 'lives': struct htab_elem ${header} B + key ${lives.bytes_key} B + value ${lives.bytes_value} B ` +
      `= ${elem} B (x ${lives.max_entries} entries allocated at load; sizes from /sys/kernel/btf/vmlinux)`,
  };
}

export function skStorageCost(maps: MapInfo[]): SkStorageCost | undefined {
  const sk = maps.filter((m) => m.type === 'sk_storage');
  if (sk.length === 0) return undefined;
  const struct = kernelStruct;
  const elem = struct('bpf_local_storage_elem');
  const data = struct('bpf_local_storage_data');
  const owner = struct('bpf_local_storage');
  const header = elem.members.get('sdata')! + data.members.get('data')!;
  const valueBytes = sk.map((m) => m.bytes_value);
  const elemBytes = valueBytes.reduce((s, v) => s + kmallocSize(header + v), 0);
  const ownerAlloc = kmallocSize(owner.size);
  return {
    valueBytes, elemHeaderBytes: header, elemBytes, ownerBytes: owner.size, ownerAllocBytes: ownerAlloc,
    perSocketBytes: elemBytes + ownerAlloc,
    how: `per map: kmalloc(${header} B element header + value ${valueBytes.join('/')} B) = ${elemBytes} B; ` +
      `plus struct bpf_local_storage ${owner.size} B -> kmalloc ${ownerAlloc} B (sizes from /sys/kernel/btf/vmlinux)`,
  };
}
