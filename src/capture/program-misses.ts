// Runs the kernel skipped: a tracing program that fires again on a CPU where it is already
// running (a softirq interrupting it in process context) is not run, and the kernel counts it
// in bpf_prog_info.recursion_misses (Linux 5.12+). Each such run is a record never written:
// an event lost as surely as one the full ring refused, so it is counted the same way.
// handle_set_state has a spare copy behind it that takes what it misses, so only the spare's
// misses count there: an upper bound, since the spare's own skipped runs may be for changes the
// first copy took (the spare checks each change, briefly, in process context too).
import { libbpf } from './libbpf.js';
import type { StructLayout } from './btf.js';

export interface ProgramMisses {
  /** recursion_misses summed over the programs; 0 where the kernel has no such counter */
  read(): number;
}

/** `layout`: struct bpf_prog_info in the kernel's BTF (undefined: no such struct). */
export function createProgramMisses(layout: StructLayout | undefined, progFds: readonly number[]): ProgramMisses {
  const member = layout?.members['recursion_misses'];
  if (!layout || !member) return { read: () => 0 };
  const info = Buffer.alloc(layout.size);
  const len = Buffer.alloc(4);
  return {
    read() {
      let sum = 0;
      for (const fd of progFds) {
        info.fill(0);
        len.writeUInt32LE(layout.size);
        if (libbpf.objGetInfoByFd(fd, info, len) === 0) sum += Number(info.readBigUInt64LE(member.offset));
      }
      return sum;
    },
  };
}
