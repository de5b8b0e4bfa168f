// The kernel's map of connection lives (bpf/tcpspan.bpf.c `lives`): its size rule,
// shared by the loader and the configuration.

/** Connection ends tracked at once by default: about 20 MiB, preallocated. */
export const DEFAULT_MAX_SOCKETS = 65536;
