// Decides when to drain the ring buffer without blocking the event loop.
//
// Idle: one epoll_wait on a libuv worker thread (koffi .async) until the kernel
// signals data. Busy: drain on a short timer and stay off epoll, because an
// eager consumer makes the kernel wake it every few records, which costs ~10x
// kernel time per event. When a drain finds nothing, go back to idle. Behind
// (a drain stopped at its bound): drain again right after the event loop's I/O,
// so exports keep going while the ring is full, instead of one endless drain.
import * as libc from './libc.js';
import type { RingBuffer } from './ring-buffer.js';

export interface RingPollerOptions {
  /** Milliseconds between drains while events keep coming. */
  busyIntervalMs: number;
  /**
   * A drain that handled this many records stopped at its bound with more waiting: the
   * next one runs right after the event loop's I/O (setImmediate), not after
   * busyIntervalMs. Unset: every drain takes all there is.
   */
  batchRecords?: number;
  /** Called after each drain with the number of records handled. */
  onDrain?: (records: number) => void;
}

export interface RingPoller {
  start(): void;
  /** Stops waiting and scheduling. The ring is left as is: drain it once more after detaching. */
  stop(): Promise<void>;
}

export function createRingPoller(ring: RingBuffer, drain: () => number, opts: RingPollerOptions): RingPoller {
  return new EpollRingPoller(ring, drain, opts);
}

class EpollRingPoller implements RingPoller {
  private readonly _epfd: number;
  private readonly _wakeFd: number;
  private readonly _events = Buffer.alloc(libc.EPOLL_EVENT_SIZE * 2);
  private _timer: NodeJS.Timeout | undefined;
  private _immediate: NodeJS.Immediate | undefined;
  private _waiting: Promise<void> | undefined;
  private _started = false;
  private _stopped = false;
  private _stopping: Promise<void> | undefined;

  constructor(private readonly _ring: RingBuffer, private readonly _drain: () => number,
              private readonly _opts: RingPollerOptions) {
    this._epfd = libc.epollCreate1(libc.EPOLL_CLOEXEC);
    if (this._epfd < 0) throw new Error(`ring poller: epoll_create1 failed: ${libc.strerror(libc.errno())}`);
    this._wakeFd = libc.eventfd(0, libc.EFD_CLOEXEC | libc.EFD_NONBLOCK);
    if (this._wakeFd < 0) {
      libc.close(this._epfd);
      throw new Error(`ring poller: eventfd failed: ${libc.strerror(libc.errno())}`);
    }
    this._add(this._ring.fd);
    this._add(this._wakeFd);
  }

  private _add(fd: number): void {
    const ev = Buffer.alloc(libc.EPOLL_EVENT_SIZE);
    ev.writeUInt32LE(libc.EPOLLIN, 0);
    ev.writeInt32LE(fd, 4); // epoll_data.fd
    if (libc.epollCtl(this._epfd, libc.EPOLL_CTL_ADD, fd, ev) < 0) {
      throw new Error(`ring poller: epoll_ctl(${fd}) failed: ${libc.strerror(libc.errno())}`);
    }
  }

  start(): void {
    if (this._started || this._stopped) return;
    this._started = true;
    this._tick();
  }

  private _tick = (): void => {
    this._timer = undefined;
    this._immediate = undefined;
    if (this._stopped) return;
    const n = this._drain();
    this._opts.onDrain?.(n);
    if (this._opts.batchRecords !== undefined && n >= this._opts.batchRecords) {
      // behind: keep draining, but let exports and timers run between batches
      this._immediate = setImmediate(this._tick);
    } else if (n > 0 || this._ring.pending() > 0) {
      this._timer = setTimeout(this._tick, this._opts.busyIntervalMs);
    } else {
      this._waitReadable();
    }
  };

  private _waitReadable(): void {
    this._waiting = new Promise((resolve) => {
      libc.epollWait.async(this._epfd, this._events, 2, -1, () => {
        this._waiting = undefined;
        resolve();
        // let a short burst accumulate before the first drain
        if (!this._stopped) this._timer = setTimeout(this._tick, 0);
      });
    });
  }

  stop(): Promise<void> {
    return (this._stopping ??= this._stop());
  }

  private async _stop(): Promise<void> {
    this._stopped = true;
    if (this._timer) clearTimeout(this._timer);
    if (this._immediate) clearImmediate(this._immediate);
    this._timer = undefined;
    this._immediate = undefined;
    if (this._waiting) {
      const one = Buffer.alloc(8);
      one.writeBigUInt64LE(1n);
      libc.write(this._wakeFd, one, 8);
      await this._waiting;
    }
    libc.close(this._wakeFd);
    libc.close(this._epfd);
  }
}
