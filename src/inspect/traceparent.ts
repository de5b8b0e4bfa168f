// The W3C `traceparent` header of an HTTP/1.x request head (https://www.w3.org/TR/trace-context/),
// found in the head of a segment the kernel copied. Only the trace id, span id and flags are
// kept; nothing else of the payload outlives the call.

import type { SpanLinkData } from '../correlate/connection-record.js';

export type { SpanLinkData } from '../correlate/connection-record.js';

const CR = 13, LF = 10, SP = 32, TAB = 9, COLON = 58, DASH = 45;
const NAME = 'traceparent';

function isLowerHex(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102);
}

function hexRun(b: Uint8Array, from: number, n: number): boolean {
  for (let i = from; i < from + n; i++) if (!isLowerHex(b[i]!)) return false;
  return true;
}

function allZero(b: Uint8Array, from: number, n: number): boolean {
  for (let i = from; i < from + n; i++) if (b[i] !== 48) return false;
  return true;
}

function text(b: Uint8Array, from: number, n: number): string {
  return String.fromCharCode.apply(null, b.subarray(from, from + n) as unknown as number[]);
}

/** The header line [from, end) names traceparent (case-insensitive): where its value starts, or -1. */
function valueStart(b: Uint8Array, from: number, end: number): number {
  if (end - from < NAME.length + 1) return -1;
  for (let i = 0; i < NAME.length; i++) if ((b[from + i]! | 0x20) !== NAME.charCodeAt(i)) return -1;
  let p = from + NAME.length;
  if (b[p] !== COLON) return -1; // no space is allowed before the colon (RFC 9112 5.1)
  p++;
  while (p < end && (b[p] === SP || b[p] === TAB)) p++;
  return p;
}

/**
 * Parses a traceparent value in [from, end) (trailing whitespace allowed): version 00 is
 * exactly 55 characters; a later version may carry more fields after a dash; ff is invalid.
 */
export function parseTraceparent(b: Uint8Array, from = 0, end = b.length): SpanLinkData | undefined {
  while (end > from && (b[end - 1] === SP || b[end - 1] === TAB)) end--;
  const n = end - from;
  if (n < 55 || !hexRun(b, from, 2) || b[from + 2] !== DASH || !hexRun(b, from + 3, 32) || b[from + 35] !== DASH ||
      !hexRun(b, from + 36, 16) || b[from + 52] !== DASH || !hexRun(b, from + 53, 2)) return undefined;
  const version = text(b, from, 2);
  if (version === 'ff' || (version === '00' ? n !== 55 : n > 55 && b[from + 55] !== DASH)) return undefined;
  if (allZero(b, from + 3, 32) || allZero(b, from + 36, 16)) return undefined;
  return { traceId: text(b, from + 3, 32), spanId: text(b, from + 36, 16), flags: parseInt(text(b, from + 53, 2), 16) };
}

/**
 * The first valid traceparent header of the request head at the start of `b` (bytes from
 * the request line on). Only whole header lines count: a head cut by the copy's end (or
 * by a segment boundary) yields nothing for the cut line. undefined: none found.
 */
export function findTraceparent(b: Uint8Array): SpanLinkData | undefined {
  // skip the request line
  let p = b.indexOf(LF);
  if (p < 0) return undefined;
  p++;
  for (;;) {
    const lf = b.indexOf(LF, p);
    if (lf < 0) return undefined; // the rest is cut
    const end = lf > p && b[lf - 1] === CR ? lf - 1 : lf;
    if (end === p) return undefined; // the empty line: end of the head
    if ((b[p]! | 0x20) === 116 /* t */) {
      const v = valueStart(b, p, end);
      if (v >= 0) {
        const link = parseTraceparent(b, v, end);
        if (link) return link;
      }
    }
    p = lf + 1;
  }
}
