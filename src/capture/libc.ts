// The few libc calls the capture path needs, through koffi.
import koffi from 'koffi';

const libc = koffi.load('libc.so.6');

export const PROT_READ = 1;
export const PROT_WRITE = 2;
export const MAP_SHARED = 1;
export const MAP_FAILED = 0xffffffffffffffffn;
export const EPOLLIN = 1;
export const EPOLL_CTL_ADD = 1;
export const EFD_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EPOLL_CLOEXEC = 0o2000000;

// struct epoll_event is packed on x86_64 (12 bytes), naturally aligned elsewhere (16).
export const EPOLL_EVENT_SIZE = process.arch === 'x64' ? 12 : 16;

export const mmap = libc.func('void *mmap(void *addr, size_t len, int prot, int flags, int fd, long off)') as (
  addr: null, len: number, prot: number, flags: number, fd: number, off: number) => bigint | null;
export const munmap = libc.func('int munmap(void *addr, size_t len)') as (addr: bigint, len: number) => number;
export const getpagesize = libc.func('int getpagesize()') as () => number;
export const close = libc.func('int close(int fd)') as (fd: number) => number;
export const epollCreate1 = libc.func('int epoll_create1(int flags)') as (flags: number) => number;
export const epollCtl = libc.func('int epoll_ctl(int epfd, int op, int fd, void *event)') as (
  epfd: number, op: number, fd: number, event: Buffer) => number;
export const epollWait = libc.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)') as {
  (epfd: number, events: Buffer, max: number, timeout: number): number;
  async(epfd: number, events: Buffer, max: number, timeout: number, cb: (err: unknown, n: number) => void): void;
};
export const eventfd = libc.func('int eventfd(unsigned int initval, int flags)') as (init: number, flags: number) => number;
export const write = libc.func('long write(int fd, const void *buf, size_t count)') as (
  fd: number, buf: Buffer, count: number) => number;
export const mount = libc.func(
  'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)') as (
  source: string, target: string, fstype: string, flags: number, data: null) => number;
const pthreadSigmask = libc.func('int pthread_sigmask(int how, const void *set, void *oldset)') as (
  how: number, set: Buffer | null, old: Buffer | null) => number;
/** sizeof(sigset_t) in glibc: 1,024 bits */
const SIGSET_BYTES = 128;
const SIG_BLOCK = 0;
const SIG_SETMASK = 2;

/**
 * Runs fn with every signal blocked on this thread (SIGKILL and SIGSTOP aside), then restores
 * the mask; signals that came meanwhile are delivered then. For long system calls that give up
 * with EAGAIN when a signal is pending, such as the BPF verifier under a profiler's SIGPROF.
 */
export function withSignalsBlocked<T>(fn: () => T): T {
  const old = Buffer.alloc(SIGSET_BYTES);
  const blocked = pthreadSigmask(SIG_BLOCK, Buffer.alloc(SIGSET_BYTES, 0xff), old) === 0;
  try {
    return fn();
  } finally {
    if (blocked) pthreadSigmask(SIG_SETMASK, old, null);
  }
}

const strerrorC = libc.func('const char *strerror(int errnum)') as (errnum: number) => string;
export const vsnprintf = libc.func('int vsnprintf(char *buf, size_t size, const char *fmt, void *ap)') as (
  buf: Buffer, size: number, fmt: string, ap: unknown) => number;

export function errno(): number {
  return koffi.errno();
}

export function strerror(err: number): string {
  return strerrorC(Math.abs(err));
}

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EACCES: 13,
  EBUSY: 16,
  EINVAL: 22,
  ENOSPC: 28,
  ENOTSUP: 95,
} as const;
