// koffi binding to the system's libbpf.so.1 (1.1 or newer: only the stable 1.x API is used).
import koffi, { type LibraryHandle } from 'koffi';
import { vsnprintf } from './libc.js';

export type Ptr = bigint;

let lib: LibraryHandle | undefined;

function load(): LibraryHandle {
  if (!lib) {
    try {
      lib = koffi.load('libbpf.so.1');
    } catch (err) {
      throw new Error(`cannot load libbpf.so.1 (${(err as Error).message}): install it with \`apt-get install libbpf1\` ` +
        'or run scripts/setup');
    }
  }
  return lib;
}

function fn<T>(decl: string): () => T {
  let f: T | undefined;
  return () => (f ??= load().func(decl) as T);
}

const api = {
  openFile: fn<(path: string, opts: null) => Ptr | null>('void *bpf_object__open_file(const char *path, const void *opts)'),
  load: fn<(obj: Ptr) => number>('int bpf_object__load(void *obj)'),
  close: fn<(obj: Ptr) => void>('void bpf_object__close(void *obj)'),
  findMap: fn<(obj: Ptr, name: string) => Ptr | null>('void *bpf_object__find_map_by_name(void *obj, const char *name)'),
  findProgram: fn<(obj: Ptr, name: string) => Ptr | null>(
    'void *bpf_object__find_program_by_name(void *obj, const char *name)'),
  mapSetMaxEntries: fn<(map: Ptr, n: number) => number>('int bpf_map__set_max_entries(void *map, uint32_t n)'),
  mapMaxEntries: fn<(map: Ptr) => number>('uint32_t bpf_map__max_entries(void *map)'),
  mapValueSize: fn<(map: Ptr) => number>('uint32_t bpf_map__value_size(void *map)'),
  mapSetInitialValue: fn<(map: Ptr, data: Buffer, size: number) => number>(
    'int bpf_map__set_initial_value(void *map, const void *data, size_t size)'),
  mapFd: fn<(map: Ptr) => number>('int bpf_map__fd(void *map)'),
  progSetAutoload: fn<(prog: Ptr, on: boolean) => number>('int bpf_program__set_autoload(void *prog, bool autoload)'),
  progAttach: fn<(prog: Ptr) => Ptr | null>('void *bpf_program__attach(void *prog)'),
  progAttachCgroup: fn<(prog: Ptr, fd: number) => Ptr | null>('void *bpf_program__attach_cgroup(void *prog, int fd)'),
  linkDestroy: fn<(link: Ptr) => number>('int bpf_link__destroy(void *link)'),
  mapLookupElem: fn<(fd: number, key: Buffer, value: Buffer) => number>(
    'int bpf_map_lookup_elem(int fd, const void *key, void *value)'),
  mapGetNextKey: fn<(fd: number, key: Buffer | null, next: Buffer) => number>(
    'int bpf_map_get_next_key(int fd, const void *key, void *next_key)'),
  mapUpdateElem: fn<(fd: number, key: Buffer, value: Buffer, flags: number) => number>(
    'int bpf_map_update_elem(int fd, const void *key, const void *value, uint64_t flags)'),
  mapDeleteElem: fn<(fd: number, key: Buffer) => number>('int bpf_map_delete_elem(int fd, const void *key)'),
  mapLookupBatch: fn<(fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Buffer, opts: null) => number>(
    'int bpf_map_lookup_batch(int fd, void *in_batch, void *out_batch, void *keys, void *values, void *count, const void *opts)'),
  progFd: fn<(prog: Ptr) => number>('int bpf_program__fd(void *prog)'),
  objGetInfoByFd: fn<(fd: number, info: Buffer, len: Buffer) => number>('int bpf_obj_get_info_by_fd(int bpf_fd, void *info, void *info_len)'),
  numPossibleCpus: fn<() => number>('int libbpf_num_possible_cpus()'),
  probeMapType: fn<(type: number, opts: null) => number>('int libbpf_probe_bpf_map_type(int type, const void *opts)'),
  probeProgType: fn<(type: number, opts: null) => number>('int libbpf_probe_bpf_prog_type(int type, const void *opts)'),
  objectBtf: fn<(obj: Ptr) => Ptr | null>('void *bpf_object__btf(void *obj)'),
  btfLoadVmlinux: fn<() => Ptr | null>('void *btf__load_vmlinux_btf()'),
  btfFree: fn<(btf: Ptr) => void>('void btf__free(void *btf)'),
  btfFindByNameKind: fn<(btf: Ptr, name: string, kind: number) => number>(
    'int btf__find_by_name_kind(void *btf, const char *name, uint32_t kind)'),
  btfTypeById: fn<(btf: Ptr, id: number) => Ptr | null>('void *btf__type_by_id(void *btf, uint32_t id)'),
  btfNameByOffset: fn<(btf: Ptr, off: number) => string | null>('const char *btf__name_by_offset(void *btf, uint32_t off)'),
  btfResolveSize: fn<(btf: Ptr, id: number) => number>('int btf__resolve_size(void *btf, uint32_t id)'),
};

export const libbpf = {
  openFile: (path: string) => api.openFile()(path, null),
  load: (obj: Ptr) => api.load()(obj),
  close: (obj: Ptr) => api.close()(obj),
  findMap: (obj: Ptr, name: string) => api.findMap()(obj, name),
  findProgram: (obj: Ptr, name: string) => api.findProgram()(obj, name),
  mapSetMaxEntries: (map: Ptr, n: number) => api.mapSetMaxEntries()(map, n),
  mapMaxEntries: (map: Ptr) => api.mapMaxEntries()(map),
  mapValueSize: (map: Ptr) => api.mapValueSize()(map),
  mapSetInitialValue: (map: Ptr, data: Buffer) => api.mapSetInitialValue()(map, data, data.length),
  mapFd: (map: Ptr) => api.mapFd()(map),
  progSetAutoload: (prog: Ptr, on: boolean) => api.progSetAutoload()(prog, on),
  progAttach: (prog: Ptr) => api.progAttach()(prog),
  progAttachCgroup: (prog: Ptr, fd: number) => api.progAttachCgroup()(prog, fd),
  linkDestroy: (link: Ptr) => api.linkDestroy()(link),
  mapLookupElem: (fd: number, key: Buffer, value: Buffer) => api.mapLookupElem()(fd, key, value),
  mapGetNextKey: (fd: number, key: Buffer | null, next: Buffer) => api.mapGetNextKey()(fd, key, next),
  mapUpdateElem: (fd: number, key: Buffer, value: Buffer) => api.mapUpdateElem()(fd, key, value, 0),
  mapDeleteElem: (fd: number, key: Buffer) => api.mapDeleteElem()(fd, key),
  /** BPF_MAP_LOOKUP_BATCH: `count` (a u32 buffer) in: room, out: entries copied; -ENOENT after the last batch. */
  mapLookupBatch: (fd: number, inBatch: Buffer | null, outBatch: Buffer, keys: Buffer, values: Buffer, count: Buffer) =>
    api.mapLookupBatch()(fd, inBatch, outBatch, keys, values, count, null),
  progFd: (prog: Ptr) => api.progFd()(prog),
  /** BPF_OBJ_GET_INFO_BY_FD: `len` (a u32 buffer) in: the room in `info`, out: what the kernel filled. */
  objGetInfoByFd: (fd: number, info: Buffer, len: Buffer) => api.objGetInfoByFd()(fd, info, len),
  numPossibleCpus: () => api.numPossibleCpus()(),
  probeMapType: (type: number) => api.probeMapType()(type, null),
  probeProgType: (type: number) => api.probeProgType()(type, null),
  objectBtf: (obj: Ptr) => api.objectBtf()(obj),
  btfLoadVmlinux: () => api.btfLoadVmlinux()(),
  btfFree: (btf: Ptr) => api.btfFree()(btf),
  btfFindByNameKind: (btf: Ptr, name: string, kind: number) => api.btfFindByNameKind()(btf, name, kind),
  btfTypeById: (btf: Ptr, id: number) => api.btfTypeById()(btf, id),
  btfNameByOffset: (btf: Ptr, off: number) => api.btfNameByOffset()(btf, off) ?? '',
  btfResolveSize: (btf: Ptr, id: number) => api.btfResolveSize()(btf, id),
};

export const BPF_MAP_TYPE_RINGBUF = 27;
export const BPF_PROG_TYPE_TRACING = 26;
export const BPF_PROG_TYPE_SOCK_OPS = 13;

/*
 * libbpf logs (verifier output included) are captured rather than printed, so
 * a failure can quote the lines that explain it. Registered once per process.
 */
const logLines: string[] = [];
let printInstalled = false;
const MAX_LOG_LINES = 400;

export function captureLibbpfLog(): void {
  if (printInstalled) return;
  printInstalled = true;
  const printProto = koffi.proto('int tcpspan_libbpf_print(int level, const char *fmt, void *args)');
  const setPrint = load().func('void *libbpf_set_print(void *fn)') as (f: unknown) => unknown;
  const buf = Buffer.alloc(4096);
  const cb = koffi.register((level: number, fmt: string, args: unknown) => {
    const n = vsnprintf(buf, buf.length, fmt, args);
    const text = buf.toString('utf8', 0, Math.max(0, Math.min(n, buf.length - 1)));
    for (const line of text.split('\n')) {
      if (line) logLines.push(level === 0 ? `warning: ${line}` : line);
    }
    if (logLines.length > MAX_LOG_LINES) logLines.splice(0, logLines.length - MAX_LOG_LINES);
    return 0;
  }, koffi.pointer(printProto));
  setPrint(cb);
}

/** The libbpf log lines written since the last call. */
export function takeLibbpfLog(): string[] {
  return logLines.splice(0, logLines.length);
}
