// Runs the real capture in-process for a test and keeps every decoded event.
import { statSync } from 'node:fs';
import { openCapture, type Capture, type Counters } from '../../src/capture/probes.js';
import { NO_FILTER, type FilterSpec } from '../../src/capture/filter.js';
import { createRingPoller, type RingPoller } from '../../src/capture/ring-poller.js';
import { decodeEvent, isConnRecord, MAX_TRANSITIONS, newKernelEvent, type KernelEvent } from '../../src/decode/event.js';
import { localAddress, remoteAddress, stateName } from '../../src/decode/format.js';

export interface CapturedEvent extends KernelEvent {
  local: string;
  remote: string;
  stateName: string;
  /** connection records: the transitions of the life so far, as 'FROM>TO' */
  transitions: string[];
}

function transitionsOf(e: KernelEvent): string[] {
  if (!isConnRecord(e.kind)) return [];
  const out: string[] = [];
  for (let i = 0; i < Math.min(e.nTrans, MAX_TRANSITIONS); i++) {
    out.push(`${stateName(i === 0 ? e.firstOldstate : e.transState[i - 1]!)}>${stateName(e.transState[i]!)}`);
  }
  return out;
}

export interface CaptureSession {
  readonly capture: Capture;
  readonly events: CapturedEvent[];
  waitFor(pred: (events: CapturedEvent[]) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Detaches, drains what is left, closes; returns the final kernel counters. */
  stop(): Promise<Counters>;
}

export function ownNetns(): number {
  return statSync('/proc/self/ns/net').ino;
}

export async function startCaptureSession(filter: Partial<FilterSpec> = {}, synTiming = true): Promise<CaptureSession> {
  const capture = openCapture({
    filter: { ...NO_FILTER, ...filter }, ringBytes: 8 << 20, synTiming,
  });
  const events: CapturedEvent[] = [];
  const scratch = newKernelEvent();
  const drain = (): number => capture.ring.drain((m, off) => {
    decodeEvent(m, off, scratch);
    events.push({
      ...scratch, transNs: [...scratch.transNs], transState: [...scratch.transState],
      local: localAddress(scratch), remote: remoteAddress(scratch), stateName: stateName(scratch.state),
      transitions: transitionsOf(scratch),
    });
  });
  const poller: RingPoller = createRingPoller(capture.ring, drain, { busyIntervalMs: 2 });
  poller.start();
  let stopped: Promise<Counters> | undefined;
  return {
    capture,
    events,
    async waitFor(pred, timeoutMs = 15_000, what = 'events') {
      const deadline = Date.now() + timeoutMs;
      while (!pred(events)) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${events.length} events seen)`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    stop() {
      return (stopped ??= (async () => {
        capture.detach();
        await poller.stop();
        while (drain() > 0);
        const counters = capture.readCounters();
        capture.close();
        return counters;
      })());
    },
  };
}
