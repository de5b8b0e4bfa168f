// How a connection end ended, who started ending it, and how many payload bytes it
// moved: pure functions of what the kernel reported about its life.
//
// Close reason, first match wins (errno: sk_err at the CLOSE transition):
//   incomplete      still open when tcpspan stopped watching it (shutdown, eviction, lost CLOSE)
//   refused         ECONNREFUSED, or an RST received in SYN_SENT
//   reset_received  an RST received while open, or ECONNRESET / EPIPE (RST in CLOSE_WAIT)
//   timeout         ETIMEDOUT: SYN, data or keepalive retransmissions exhausted
//   reset_sent      an RST sent by this socket at its close: the RST comes with state CLOSE
//                   (SO_LINGER 0, close with unread data; the CLOSE itself carries error 0)
//                   or right before the CLOSE (tcp_abort). RSTs of the timewait socket and
//                   RSTs sent while the connection went on do not end it.
//   fin             orderly: CLOSE from FIN_WAIT2, CLOSING, LAST_ACK (or TIME_WAIT), error 0
//   aborted         anything else: a connect given up (SYN_SENT>CLOSE, error 0), another errno
// Close initiator: the side whose FIN came first (FIN_WAIT1/FIN_WAIT2 seen: local;
//   CLOSE_WAIT/LAST_ACK: peer; CLOSING: both at once, so undefined). Without a FIN:
//   refused and reset_received: peer; reset_sent and timeout: local; aborted: local
//   with error 0, undefined with an errno (the network said so); incomplete: undefined.
// Bytes. tcp_sock's bytes_acked and bytes_received count sequence space, so SYN and FIN
//   are in them. Sent = bytes_acked - 1 for the client's SYN (acked by the SYN-ACK; the
//   server's child socket starts past its SYN-ACK) - 1 once this end's FIN is acked
//   (FIN_WAIT2 seen, or CLOSING/LAST_ACK left without error). Received = bytes_received
//   - 1 once the peer's FIN arrived (CLOSE_WAIT, CLOSING, LAST_ACK seen; FIN_WAIT2>TIME_WAIT;
//   FIN_WAIT2>CLOSE when the kernel saw the peer's FIN (SOCK_DONE): an orphaned socket
//   hands over to timewait at the ACK of its FIN, before the peer's FIN). An end open before
//   tcpspan started has its SYN subtracted when connect() picked its local port (the kernel's
//   bind bucket says so, bpf/tcpspan.h TCPSPAN_PORT_*): it opened the connection.
import { constants as osConstants } from 'node:os';
import { TcpState as S } from '../decode/event.js';
import type { CloseInitiator, CloseReason } from './connection-record.js';

const { ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE } = osConstants.errno;

/** Facts about a life, as bits (LifeFact). */
export const LifeFact = {
  FinLocal: 1 << 0, //        this end's FIN came first
  FinPeer: 1 << 1, //         the peer's FIN came first
  FinSimultaneous: 1 << 2, // CLOSING: both FINs crossed
  LocalFinAcked: 1 << 3,
  PeerFin: 1 << 4,
  OrderlyEnd: 1 << 5,
  RstReceived: 1 << 6, //     an RST received while open
  RstReceivedSynSent: 1 << 7,
  RstSentTerminal: 1 << 8, // an RST sent at (or right before) the close
  Incomplete: 1 << 9,
} as const;

/**
 * The facts a sequence of state transitions shows. `states[i]` is the state entered by
 * transition i, `firstFrom` the state the first one left; `closeError` is sk_err at the
 * end, `peerFinSeen` the kernel's SOCK_DONE at the end.
 */
export function transitionFacts(firstFrom: number, states: readonly number[], n: number, closeError: number,
                                peerFinSeen: boolean): number {
  let f = 0;
  let from = firstFrom;
  for (let i = 0; i < n; i++) {
    const to = states[i]!;
    f = noteFinOrder(f, from);
    f = noteFinOrder(f, to);
    const last = i === n - 1;
    const err = last ? closeError : 0;
    if (from === S.FIN_WAIT2 || to === S.FIN_WAIT2 ||
        ((from === S.CLOSING || from === S.LAST_ACK) && (to === S.CLOSE || to === S.TIME_WAIT) && err === 0)) {
      f |= LifeFact.LocalFinAcked;
    }
    if (to === S.CLOSE_WAIT || to === S.CLOSING || from === S.CLOSE_WAIT || from === S.LAST_ACK || from === S.CLOSING ||
        (from === S.FIN_WAIT2 && (to === S.TIME_WAIT || (to === S.CLOSE && err === 0 && peerFinSeen)))) {
      f |= LifeFact.PeerFin;
    }
    if (last && (to === S.CLOSE || to === S.TIME_WAIT) && err === 0 &&
        (to === S.TIME_WAIT || from === S.FIN_WAIT2 || from === S.CLOSING || from === S.LAST_ACK || from === S.TIME_WAIT)) {
      f |= LifeFact.OrderlyEnd;
    }
    from = to;
  }
  return f;
}

function noteFinOrder(f: number, state: number): number {
  if (state === S.CLOSING) return f | LifeFact.FinSimultaneous;
  if ((f & (LifeFact.FinLocal | LifeFact.FinPeer)) !== 0) return f;
  if (state === S.FIN_WAIT1 || state === S.FIN_WAIT2) return f | LifeFact.FinLocal;
  if (state === S.CLOSE_WAIT || state === S.LAST_ACK) return f | LifeFact.FinPeer;
  return f;
}

/**
 * Whether a closed end may still get events from the kernel (an abortive close's RST,
 * the error report): everything but an orderly close without error.
 */
export function mayHaveTrailingEvents(lastFrom: number, closeError: number): boolean {
  return closeError !== 0 || !(lastFrom === S.FIN_WAIT2 || lastFrom === S.LAST_ACK || lastFrom === S.CLOSING ||
    lastFrom === S.TIME_WAIT);
}

export function closeReason(facts: number, closeError: number): CloseReason {
  const f = facts, err = closeError;
  if ((f & LifeFact.Incomplete) !== 0) return 'incomplete';
  if (err === ECONNREFUSED || (f & LifeFact.RstReceivedSynSent) !== 0) return 'refused';
  if ((f & LifeFact.RstReceived) !== 0 || err === ECONNRESET || err === EPIPE) return 'reset_received';
  if (err === ETIMEDOUT) return 'timeout';
  if ((f & LifeFact.RstSentTerminal) !== 0) return 'reset_sent';
  if ((f & LifeFact.OrderlyEnd) !== 0) return 'fin';
  return 'aborted';
}

export function closeInitiator(facts: number, reason: CloseReason, closeError: number): CloseInitiator | undefined {
  const f = facts;
  if ((f & LifeFact.FinSimultaneous) !== 0) return undefined;
  if ((f & LifeFact.FinLocal) !== 0) return 'local';
  if ((f & LifeFact.FinPeer) !== 0) return 'peer';
  switch (reason) {
    case 'refused':
    case 'reset_received':
      return 'peer';
    case 'reset_sent':
    case 'timeout':
      return 'local';
    case 'aborted':
      return closeError === 0 ? 'local' : undefined;
    default:
      return undefined;
  }
}

/** Payload bytes sent: bytes_acked without the client's SYN and this end's FIN. */
export function payloadSent(bytesAcked: number, countsSyn: boolean, facts: number): number {
  return Math.max(0, bytesAcked - (countsSyn ? 1 : 0) - ((facts & LifeFact.LocalFinAcked) !== 0 ? 1 : 0));
}

/** Payload bytes received: bytes_received without the peer's FIN. */
export function payloadReceived(bytesReceived: number, facts: number): number {
  return Math.max(0, bytesReceived - ((facts & LifeFact.PeerFin) !== 0 ? 1 : 0));
}

/** True for a reason that makes the span's status ERROR (aborted only with an errno). */
export function isErrorClose(reason: CloseReason, errno: number): boolean {
  switch (reason) {
    case 'refused': case 'timeout': case 'reset_received': case 'reset_sent': return true;
    case 'aborted': return errno !== 0;
    default: return false;
  }
}
