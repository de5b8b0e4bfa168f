// Bounded metric cardinality: the busiest listening ports get a series of their own, at
// most `size` of them; every other port counts under `other`. A port that received no SYN
// for idleMs gives its slot up, so the slots follow the traffic.

export const OTHER = 'other';

export interface PortSlots {
  /**
   * The label of each port this interval, the busiest (by this interval's SYNs) served first,
   * so free slots go to them.
   */
  assign(busy: readonly { port: number; syns: number }[], nowMs: number): Map<number, number | typeof OTHER>;
  /** The ports holding a slot now. */
  ports(): number[];
}

export function createPortSlots(size: number, idleMs: number): PortSlots {
  const lastActive = new Map<number, number>();
  return {
    assign(busy, nowMs) {
      for (const [port, t] of lastActive) if (nowMs - t > idleMs) lastActive.delete(port);
      const out = new Map<number, number | typeof OTHER>();
      for (const { port, syns } of [...busy].sort((a, b) => b.syns - a.syns)) {
        if (lastActive.has(port) || (syns > 0 && lastActive.size < size)) {
          if (syns > 0 || !lastActive.has(port)) lastActive.set(port, nowMs);
          out.set(port, port);
        } else {
          out.set(port, OTHER);
        }
      }
      return out;
    },
    ports: () => [...lastActive.keys()],
  };
}
