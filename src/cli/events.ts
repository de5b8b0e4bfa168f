// `tcpspan events`: decoded kernel events as JSON lines on stdout, loss counters on stderr at the end.
import { openCapture, type Capture } from '../capture/probes.js';
import { DEFAULT_RING_BYTES, isValidRingBytes, MAX_RING_BYTES, MIN_RING_BYTES } from '../capture/ring-size.js';
import { buildFilter } from '../capture/filter.js';
import { createRingPoller } from '../capture/ring-poller.js';
import { decodeEvent, newKernelEvent, type RecordMemory } from '../decode/event.js';
import { createClock, eventToJson } from '../decode/format.js';
import { parseFlags } from '../config/flags.js';
import { usageText } from '../config/usage-text.js';
import { onShutdownSignal, UsageError } from './common.js';

export interface EventsSummary {
  submitted: number;
  received: number;
  lost: { ringbuf_full: number; recursion_miss: number; in_transit: number };
  untracked_sockets: number;
  syn_times_not_recorded: number;
  handler_errors: number;
}

export async function runEvents(argv: string[]): Promise<number> {
  const { help, values } = parseFlags('events', argv);
  if (help) {
    process.stdout.write(`${usageText('events')}\n`);
    return 0;
  }
  const filter = usage(() => buildFilter(values.port ?? [], values.addr ?? [], parseNetns(values.netns)));
  const ringBytes = parseRingBytes(values['ring-bytes'] ?? String(DEFAULT_RING_BYTES));
  const capture = openCapture({
    filter, ringBytes, synTiming: true,
    warn: (m) => process.stderr.write(`tcpspan events: warning: ${m}\n`),
  });
  const attached = capture.programs.filter((p) => p.attached).length;
  process.stderr.write(`tcpspan events: capturing (${attached} programs attached); SIGINT or SIGTERM to stop\n`);
  return streamEvents(capture);
}

function usage<T>(fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
}

function parseNetns(text: string | undefined): number {
  if (text === undefined) return 0;
  if (!/^\d+$/.test(text)) throw new UsageError(`invalid --netns '${text}': expected a namespace inode number`);
  return Number(text);
}

export function parseRingBytes(text: string): number {
  const n = Number(text);
  if (!isValidRingBytes(n)) {
    throw new UsageError(`invalid --ring-bytes '${text}': expected a power of two from ${MIN_RING_BYTES} to ${MAX_RING_BYTES}`);
  }
  return n;
}

async function streamEvents(capture: Capture): Promise<number> {
  const clock = createClock();
  const event = newKernelEvent();
  let received = 0;
  let lines: string[] = [];
  let outputClosed = false;

  const handle = (m: RecordMemory, off: number): void => {
    decodeEvent(m, off, event);
    received++;
    lines.push(JSON.stringify(eventToJson(event, clock)));
  };
  const flush = (): void => {
    if (lines.length === 0 || outputClosed) { lines = []; return; }
    process.stdout.write(`${lines.join('\n')}\n`);
    lines = [];
  };
  const drain = (): number => {
    const n = capture.ring.drain(handle);
    flush();
    return n;
  };
  const poller = createRingPoller(capture.ring, drain, { busyIntervalMs: 2 });

  const stopped = new Promise<void>((resolve) => {
    onShutdownSignal(resolve);
    process.stdout.on('error', () => { outputClosed = true; resolve(); });
  });
  poller.start();
  await stopped;

  // stop intake, then take what is already in the ring
  capture.detach();
  await poller.stop();
  while (drain() > 0);
  const c = capture.readCounters();
  const summary: EventsSummary = {
    submitted: c.submitted,
    received,
    lost: { ringbuf_full: c.ringbufFull, recursion_miss: c.recursionMisses, in_transit: Math.max(0, c.submitted - received) },
    untracked_sockets: c.sockMapFull,
    syn_times_not_recorded: c.synMapFull,
    handler_errors: capture.ring.handlerErrors,
  };
  capture.close();
  process.stderr.write(`${JSON.stringify({ tcpspan_events_summary: summary })}\n`);
  return 0;
}
