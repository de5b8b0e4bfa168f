// Port-scan detection: a pure state machine, fed with observations and a clock.
//
// An observation is one local port of one peer address that refused a SYN (an RST from a
// closed port) or never completed a handshake (a SYN-ACK retransmitted for want of its ACK,
// or an RST from the peer ending the handshake). A peer whose observations in one window
// (detect.scan.windowMs, from its first observation) touch more than detect.scan.ports
// distinct local ports is a scan: one detection per peer and window, reported when the
// window closes, with the whole window's evidence. Connections that complete their
// handshake are never observed, so ordinary traffic, however many connections, is not.
//
// Memory: at most maxPeers peers (the fixed table); at the bound the peer whose window
// began first is evicted (counted), and reported at once if it is already a scan. A peer
// keeps its distinct ports in a small set, and in an 8 KiB bitmap once it has touched
// more than SMALL_PORTS of them (scanners only).

export type ScanObservationKind = 'refused' | 'unanswered';

export interface PortScan {
  netns: number;
  family: 'ipv4' | 'ipv6';
  address: string;
  /** distinct local ports that refused or never completed a handshake */
  ports: number;
  /** SYNs refused (RST from a closed port) */
  refused: number;
  /** handshakes never completed (SYN-ACK retransmits, RSTs in the handshake) */
  unanswered: number;
  lowPort: number;
  highPort: number;
  /** CLOCK_MONOTONIC ns of the window's first and last observation */
  startNs: number;
  endNs: number;
}

export interface PortScanOptions {
  /** a peer touching more than this many distinct ports in one window is a scan */
  ports: number;
  windowMs: number;
  /** peers tracked at most */
  maxPeers: number;
}

export interface PortScanStats {
  peers: number;
  /** peers pushed out of the full table before their window closed */
  evicted: number;
  detections: number;
}

export interface PortScanDetector {
  observe(netns: number, family: 'ipv4' | 'ipv6', address: string, port: number, kind: ScanObservationKind, timeNs: number): void;
  /** Closes the windows older than windowMs at nowNs; the scans among them. */
  tick(nowNs: number): PortScan[];
  /** Closes every window (shutdown): the scans among them. */
  flush(): PortScan[];
  stats(): PortScanStats;
}

export const SMALL_PORTS = 64;

class Peer {
  small: Set<number> | undefined = new Set();
  bitmap: Uint8Array | undefined;
  ports = 0;
  refused = 0;
  unanswered = 0;
  low = 65536;
  high = -1;
  endNs: number;

  constructor(readonly netns: number, readonly family: 'ipv4' | 'ipv6', readonly address: string, readonly startNs: number) {
    this.endNs = startNs;
  }

  add(port: number, kind: ScanObservationKind, timeNs: number): void {
    if (kind === 'refused') this.refused++;
    else this.unanswered++;
    if (timeNs > this.endNs) this.endNs = timeNs;
    if (port < this.low) this.low = port;
    if (port > this.high) this.high = port;
    if (this.small !== undefined) {
      if (this.small.has(port)) return;
      this.small.add(port);
      this.ports++;
      if (this.small.size > SMALL_PORTS) {
        this.bitmap = new Uint8Array(8192);
        for (const p of this.small) this.bitmap[p >> 3]! |= 1 << (p & 7);
        this.small = undefined;
      }
      return;
    }
    const b = this.bitmap!;
    if (b[port >> 3]! & (1 << (port & 7))) return;
    b[port >> 3]! |= 1 << (port & 7);
    this.ports++;
  }

  scan(): PortScan {
    return {
      netns: this.netns, family: this.family, address: this.address, ports: this.ports, refused: this.refused,
      unanswered: this.unanswered, lowPort: this.low, highPort: this.high, startNs: this.startNs, endNs: this.endNs,
    };
  }
}

export function createPortScanDetector(opts: PortScanOptions): PortScanDetector {
  const windowNs = opts.windowMs * 1e6;
  const maxPeers = Math.max(1, opts.maxPeers);
  // insertion order is window order: a peer is re-inserted when its next window begins
  const peers = new Map<string, Peer>();
  let evicted = 0;
  let detections = 0;
  let found: PortScan[] = [];

  const close = (key: string, p: Peer): void => {
    peers.delete(key);
    if (p.ports > opts.ports) {
      detections++;
      found.push(p.scan());
    }
  };

  return {
    observe(netns, family, address, port, kind, timeNs) {
      const key = `${netns}/${address}`;
      let p = peers.get(key);
      if (p !== undefined && timeNs - p.startNs > windowNs) {
        close(key, p);
        p = undefined;
      }
      if (p === undefined) {
        if (peers.size >= maxPeers) {
          const [oldKey, old] = peers.entries().next().value as [string, Peer];
          if (old.ports <= opts.ports) evicted++;
          close(oldKey, old); // a scan already is reported now rather than lost
        }
        p = new Peer(netns, family, address, timeNs);
        peers.set(key, p);
      }
      p.add(port, kind, timeNs);
    },
    tick(nowNs) {
      for (const [key, p] of peers) {
        if (nowNs - p.startNs <= windowNs) break; // the rest began later
        close(key, p);
      }
      const out = found;
      found = [];
      return out;
    },
    flush() {
      for (const [key, p] of peers) close(key, p);
      const out = found;
      found = [];
      return out;
    },
    stats: () => ({ peers: peers.size, evicted, detections }),
  };
}
