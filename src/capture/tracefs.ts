// tracefs: classic tracepoints (the accept programs) find their ids there. A fresh machine may
// not have it mounted; root can mount it, and does, before anything attaches to it.
import { existsSync, mkdirSync } from 'node:fs';
import * as libc from './libc.js';

export const TRACEFS = '/sys/kernel/tracing';

/** Mounted already ('mounted'), mounted now ('mounted_now'), or why it could not be (an errno text). */
export function ensureTracefs(): 'mounted' | 'mounted_now' | string {
  if (existsSync(`${TRACEFS}/events`)) return 'mounted';
  try { mkdirSync(TRACEFS, { recursive: true }); } catch { /* mount reports the error */ }
  if (libc.mount('tracefs', TRACEFS, 'tracefs', 0, null) === 0) return 'mounted_now';
  return libc.strerror(libc.errno());
}
