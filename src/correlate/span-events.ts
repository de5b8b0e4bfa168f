// A connection's span events, kept packed until emission: three numbers each,
// [code, timeNs, value], so an open connection holds no event objects.
//
//   code = kind | state << 3 | retransmit type << 8 | failed << 10 | |errno| << 11
//   kind:  STATE_CHANGE (a transition of the connection's life), or the wire kind of
//          a rare event (EventKind.Retransmit, ResetReceived, ResetSent, Error)
//   value: retransmit segments, or the errno of an error report
//
// This module is the only place that writes or reads that layout.
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import { EventKind, STATE_NAMES, TcpState as S } from '../decode/event.js';
import type { ConnectionEvent } from './connection-record.js';
import { errnoName } from './errno.js';
import * as sc from './semconv.js';

/** Not a wire kind: a state transition from a connection record. */
export const STATE_CHANGE = 0;

const RT_SYN = 0, RT_SYN_ACK = 1, RT_DATA = 2, RT_FIN = 3;
const RETRANSMIT_TYPES = ['syn', 'syn_ack', 'data', 'fin'] as const;
const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_ACK = 0x10;

export function stateChangeCode(state: number): number {
  return STATE_CHANGE | ((state & 0x1f) << 3);
}

/** A reset or error report seen in `state`. */
export function socketEventCode(kind: number, state: number): number {
  return (kind & 7) | ((state & 0x1f) << 3);
}

export function retransmitCode(state: number, tcpFlags: number, error: number): number {
  return EventKind.Retransmit | ((state & 0x1f) << 3) | (retransmitType(tcpFlags) << 8) |
    ((error !== 0 ? 1 : 0) << 10) | ((Math.abs(error) & 0xff) << 11);
}

/** A SYN-ACK retransmit (of the request socket, before this server end existed). */
export const SYNACK_RETRANSMIT_CODE = EventKind.Retransmit | (S.SYN_RECV << 3) | (RT_SYN_ACK << 8);

function retransmitType(tcpFlags: number): number {
  if ((tcpFlags & TCP_SYN) !== 0) return (tcpFlags & TCP_ACK) !== 0 ? RT_SYN_ACK : RT_SYN;
  return (tcpFlags & TCP_FIN) !== 0 ? RT_FIN : RT_DATA;
}

// network.connection.state values (semantic conventions) by kernel state
const STATE_VALUES: string[] = [];
STATE_VALUES[S.ESTABLISHED] = sc.NETWORK_CONNECTION_STATE_VALUE_ESTABLISHED;
STATE_VALUES[S.SYN_SENT] = sc.NETWORK_CONNECTION_STATE_VALUE_SYN_SENT;
STATE_VALUES[S.SYN_RECV] = sc.NETWORK_CONNECTION_STATE_VALUE_SYN_RECEIVED;
STATE_VALUES[S.FIN_WAIT1] = sc.NETWORK_CONNECTION_STATE_VALUE_FIN_WAIT_1;
STATE_VALUES[S.FIN_WAIT2] = sc.NETWORK_CONNECTION_STATE_VALUE_FIN_WAIT_2;
STATE_VALUES[S.TIME_WAIT] = sc.NETWORK_CONNECTION_STATE_VALUE_TIME_WAIT;
STATE_VALUES[S.CLOSE] = sc.NETWORK_CONNECTION_STATE_VALUE_CLOSED;
STATE_VALUES[S.CLOSE_WAIT] = sc.NETWORK_CONNECTION_STATE_VALUE_CLOSE_WAIT;
STATE_VALUES[S.LAST_ACK] = sc.NETWORK_CONNECTION_STATE_VALUE_LAST_ACK;
STATE_VALUES[S.LISTEN] = sc.NETWORK_CONNECTION_STATE_VALUE_LISTEN;
STATE_VALUES[S.CLOSING] = sc.NETWORK_CONNECTION_STATE_VALUE_CLOSING;
STATE_VALUES[S.NEW_SYN_RECV] = sc.NETWORK_CONNECTION_STATE_VALUE_SYN_RECEIVED; // a request socket

/** The network.connection.state value of a kernel TCP state. */
export function connectionState(state: number): string {
  return STATE_VALUES[state] ?? (STATE_NAMES[state] ?? `state_${state}`).toLowerCase();
}

// Attribute maps of state changes are the same for every span: built once, shared (never mutated).
const STATE_ATTRIBUTES = STATE_VALUES.map((_, state) => Object.freeze({ [sc.ATTR_NETWORK_CONNECTION_STATE]: connectionState(state) }));

function stateAttributes(state: number): Record<string, string> {
  return STATE_ATTRIBUTES[state] ?? { [sc.ATTR_NETWORK_CONNECTION_STATE]: connectionState(state) };
}

function toEvent(code: number, timeNs: number, value: number): ConnectionEvent {
  const state = (code >> 3) & 0x1f;
  switch (code & 7) {
    case STATE_CHANGE:
      return { name: sc.EVENT_TCP_STATE_CHANGE, timeNs, attributes: stateAttributes(state) };
    case EventKind.Retransmit: {
      const failed = ((code >> 10) & 1) === 1;
      const attributes: ConnectionEvent['attributes'] = {
        [sc.ATTR_NETWORK_CONNECTION_STATE]: connectionState(state),
        [sc.ATTR_TCP_RETRANSMIT_TYPE]: RETRANSMIT_TYPES[(code >> 8) & 3]!,
        [sc.ATTR_TCP_RETRANSMIT_SENT]: !failed,
        [sc.ATTR_TCP_RETRANSMIT_SEGMENTS]: value,
      };
      if (failed) attributes[sc.ATTR_TCP_RETRANSMIT_ERROR] = errnoName(code >> 11);
      return { name: sc.EVENT_TCP_RETRANSMIT, timeNs, attributes };
    }
    case EventKind.ResetReceived:
      return { name: sc.EVENT_TCP_RESET_RECEIVED, timeNs, attributes: stateAttributes(state) };
    case EventKind.ResetSent:
      return { name: sc.EVENT_TCP_RESET_SENT, timeNs, attributes: stateAttributes(state) };
    default: // EventKind.Error
      return { name: sc.EVENT_TCP_ERROR, timeNs, attributes: { [ATTR_ERROR_TYPE]: errnoName(value), [sc.ATTR_TCP_ERROR_CODE]: value } };
  }
}

/**
 * The span events of a connection, in time order: its rare events (packed, in arrival
 * order) merged with its state transitions (packed, from its connection record), at
 * most `max` of them. Over the cap, what shows how the connection went is kept first:
 * state transitions, then resets and errors, then retransmits in order. How many were
 * left out is returned in `cut[0]`.
 */
export function unpackEvents(rare: readonly number[], trans: readonly number[], max: number, cut: number[]): ConnectionEvent[] {
  const nRare = rare.length / 3, nTrans = trans.length / 3;
  let keepTrans = nTrans, keepLife = 0, keepRetrans = 0;
  let lifecycle = 0;
  for (let i = 0; i < rare.length; i += 3) if ((rare[i]! & 7) !== EventKind.Retransmit) lifecycle++;
  if (nTrans + nRare > max) {
    keepTrans = Math.min(nTrans, Math.max(0, max));
    keepLife = Math.min(lifecycle, max - keepTrans);
    keepRetrans = Math.min(nRare - lifecycle, max - keepTrans - keepLife);
  } else {
    keepLife = lifecycle;
    keepRetrans = nRare - lifecycle;
  }
  cut[0] = nTrans + nRare - keepTrans - keepLife - keepRetrans;
  const out: ConnectionEvent[] = new Array(keepTrans + keepLife + keepRetrans);
  let i = 0, j = 0, k = 0, life = 0, retrans = 0;
  for (;;) {
    // the next rare event that is kept
    while (i < nRare) {
      const isRetrans = (rare[3 * i]! & 7) === EventKind.Retransmit;
      if (isRetrans ? retrans < keepRetrans : life < keepLife) break;
      i++;
    }
    const haveRare = i < nRare, haveTrans = j < keepTrans;
    if (!haveRare && !haveTrans) break;
    // on equal times the transition first: the kernel reports a state change before what follows it
    if (haveTrans && (!haveRare || trans[3 * j + 1]! <= rare[3 * i + 1]!)) {
      out[k++] = toEvent(trans[3 * j]!, trans[3 * j + 1]!, trans[3 * j + 2]!);
      j++;
    } else {
      if ((rare[3 * i]! & 7) === EventKind.Retransmit) retrans++;
      else life++;
      out[k++] = toEvent(rare[3 * i]!, rare[3 * i + 1]!, rare[3 * i + 2]!);
      i++;
    }
  }
  return out;
}
