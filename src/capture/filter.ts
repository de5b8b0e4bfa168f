// Kernel-side filters: parsed from flags/config, encoded as struct tcpspan_filter (bpf/tcpspan.h).
import { isIP } from 'node:net';
import { CIDR_LAYOUT, FILTER_LAYOUT, InspectBits, MAX_CIDRS, MAX_PORTS } from '../decode/wire-layout.js';
import { AF_INET, AF_INET6 } from '../decode/event.js';

export interface Cidr {
  family: typeof AF_INET | typeof AF_INET6;
  addr: Uint8Array; // 4 or 16 bytes
  prefix: number;
  text: string;
}

export interface FilterSpec {
  ports: number[];
  cidrs: Cidr[];
  netns: number; // 0: every namespace
}

export const NO_FILTER: FilterSpec = { ports: [], cidrs: [], netns: 0 };

export function parsePort(text: string): number {
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isInteger(n) || n < 1 || n > 65535) throw new Error(`invalid port '${text}': expected a number from 1 to 65535`);
  return n;
}

export function parseCidr(text: string): Cidr {
  const [addrText = '', prefixText, extra] = text.split('/');
  const fam = isIP(addrText);
  if (extra !== undefined || fam === 0) {
    throw new Error(`invalid address range '${text}': expected an address or CIDR such as 10.0.0.0/8 or fd00::/64`);
  }
  const bits = fam === 4 ? 32 : 128;
  const prefix = prefixText === undefined ? bits : /^\d+$/.test(prefixText) ? Number(prefixText) : NaN;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bits) {
    throw new Error(`invalid address range '${text}': the prefix length must be 0 to ${bits}`);
  }
  const addr = fam === 4 ? parseIPv4(addrText) : parseIPv6(addrText);
  return { family: fam === 4 ? AF_INET : AF_INET6, addr, prefix, text };
}

function parseIPv4(text: string): Uint8Array {
  return Uint8Array.from(text.split('.').map(Number));
}

function parseIPv6(text: string): Uint8Array {
  let s = text;
  const out = new Uint8Array(16);
  let tail: number[] = [];
  // embedded IPv4 (::ffff:1.2.3.4)
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (v4) {
    const b = parseIPv4(v4[1]!);
    tail = [(b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!];
    s = s.slice(0, -v4[1]!.length);
    if (s.endsWith(':') && !s.endsWith('::')) s = s.slice(0, -1);
  }
  const [head = '', rest] = s.split('::');
  const h = head ? head.split(':').map((g) => parseInt(g, 16)) : [];
  const r = rest !== undefined && rest !== '' ? rest.split(':').map((g) => parseInt(g, 16)) : [];
  const groups = rest === undefined ? [...h, ...tail] : [...h, ...new Array(8 - h.length - r.length - tail.length).fill(0), ...r, ...tail];
  groups.forEach((g, i) => { out[2 * i] = g >> 8; out[2 * i + 1] = g & 0xff; });
  return out;
}

export function buildFilter(ports: string[], cidrs: string[], netns = 0): FilterSpec {
  if (ports.length > MAX_PORTS) throw new Error(`too many ports (${ports.length}): at most ${MAX_PORTS}`);
  if (cidrs.length > MAX_CIDRS) throw new Error(`too many address ranges (${cidrs.length}): at most ${MAX_CIDRS}`);
  return { ports: [...new Set(ports.map(parsePort))], cidrs: cidrs.map(parseCidr), netns };
}

/** What the payload programs look for (inspect.*); both off: they are not loaded. */
export interface InspectSpec {
  traceparent: boolean;
  protocols: boolean;
}

export const NO_INSPECT: InspectSpec = { traceparent: false, protocols: false };

/**
 * struct tcpspan_filter, ready for the read-only data of the BPF object. `synSockops`:
 * the sock_ops program records SYN arrivals, so the kernel looks them up.
 */
export function encodeFilter(spec: FilterSpec, synSockops: boolean, inspect: InspectSpec = NO_INSPECT, detect = false): Buffer {
  const buf = Buffer.alloc(FILTER_LAYOUT.size);
  const F = FILTER_LAYOUT.fields, C = CIDR_LAYOUT.fields;
  spec.cidrs.forEach((c, i) => {
    const base = F.cidrs.offset + i * CIDR_LAYOUT.size;
    buf.set(c.addr, base + C.addr.offset);
    buf.writeUInt32LE(c.family, base + C.family.offset);
    buf.writeUInt32LE(c.prefix, base + C.prefix.offset);
  });
  spec.ports.forEach((p, i) => buf.writeUInt16LE(p, F.ports.offset + 2 * i));
  buf.writeUInt32LE(spec.cidrs.length, F.n_cidrs.offset);
  buf.writeUInt32LE(spec.ports.length, F.n_ports.offset);
  buf.writeUInt32LE(spec.netns, F.netns.offset);
  buf.writeUInt32LE(synSockops ? 1 : 0, F.syn_sockops.offset);
  buf.writeUInt32LE((inspect.traceparent ? InspectBits.Traceparent : 0) | (inspect.protocols ? InspectBits.Protocols : 0), F.inspect.offset);
  buf.writeUInt32LE(detect ? 1 : 0, F.detect.offset);
  return buf;
}
