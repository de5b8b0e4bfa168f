// Reads type layouts from BTF: the compiled object's (wire structs) and the kernel's (tracepoint signatures).
import koffi from 'koffi';
import { libbpf, type Ptr } from './libbpf.js';

const BTF_KIND_PTR = 2;
const BTF_KIND_STRUCT = 4;
const BTF_KIND_TYPEDEF = 8;
const BTF_KIND_FUNC_PROTO = 13;
const BTF_TYPE_SIZE = 12;
const BTF_MEMBER_SIZE = 12;

export interface StructLayout {
  name: string;
  size: number;
  members: Record<string, { offset: number; size: number }>;
}

interface RawType {
  kind: number;
  vlen: number;
  kflag: boolean;
  sizeOrType: number;
  view: DataView;
}

function rawType(btf: Ptr, id: number, withMembers: boolean): RawType | undefined {
  const ptr = libbpf.btfTypeById(btf, id);
  if (!ptr) return undefined;
  let view = new DataView(koffi.view(ptr, BTF_TYPE_SIZE));
  const info = view.getUint32(4, true);
  const vlen = info & 0xffff;
  if (withMembers && vlen > 0) view = new DataView(koffi.view(ptr, BTF_TYPE_SIZE + vlen * BTF_MEMBER_SIZE));
  return { kind: (info >>> 24) & 0x1f, vlen, kflag: (info >>> 31) === 1, sizeOrType: view.getUint32(8, true), view };
}

/** The layout of `struct name` in a BTF object, or undefined when absent. */
export function structLayout(btf: Ptr, name: string): StructLayout | undefined {
  const id = libbpf.btfFindByNameKind(btf, name, BTF_KIND_STRUCT);
  if (id < 0) return undefined;
  const t = rawType(btf, id, true);
  if (!t) return undefined;
  const members: StructLayout['members'] = {};
  for (let i = 0; i < t.vlen; i++) {
    const base = BTF_TYPE_SIZE + i * BTF_MEMBER_SIZE;
    const memberName = libbpf.btfNameByOffset(btf, t.view.getUint32(base, true));
    const type = t.view.getUint32(base + 4, true);
    const rawOffset = t.view.getUint32(base + 8, true);
    const bitOffset = t.kflag ? rawOffset & 0xffffff : rawOffset;
    members[memberName] = { offset: bitOffset / 8, size: libbpf.btfResolveSize(btf, type) };
  }
  return { name, size: t.sizeOrType, members };
}

/**
 * The number of arguments of a tracepoint as the running kernel declares it
 * (btf_trace_<name> is a typedef of a pointer to a prototype whose first
 * parameter is the tracepoint's private data), or undefined when absent.
 */
export function tracepointArgCount(vmlinux: Ptr, tracepoint: string): number | undefined {
  const id = libbpf.btfFindByNameKind(vmlinux, `btf_trace_${tracepoint}`, BTF_KIND_TYPEDEF);
  if (id < 0) return undefined;
  let t = rawType(vmlinux, id, false);
  for (let hops = 0; t && hops < 4 && t.kind !== BTF_KIND_FUNC_PROTO; hops++) {
    if (t.kind !== BTF_KIND_TYPEDEF && t.kind !== BTF_KIND_PTR) return undefined;
    t = rawType(vmlinux, t.sizeOrType, false);
  }
  return t?.kind === BTF_KIND_FUNC_PROTO ? t.vlen - 1 : undefined;
}

/** Runs fn with the kernel's BTF loaded, freeing it afterwards. */
export function withVmlinuxBtf<T>(fn: (btf: Ptr) => T): T {
  const btf = libbpf.btfLoadVmlinux();
  if (!btf) {
    throw new Error('cannot read the kernel BTF (/sys/kernel/btf/vmlinux): a kernel built with CONFIG_DEBUG_INFO_BTF=y is required');
  }
  try {
    return fn(btf);
  } finally {
    libbpf.btfFree(btf);
  }
}
