// What the export spool costs: spans/s and CPU per 1000 spans to write encoded connection spans to
// it (as the queue does while the collector is away: batches of 2048) and to read them back and
// acknowledge them (as it does once the collector answers), with the bytes a span takes on disk.
// While exports succeed and the spool is empty nothing is written: that path costs nothing.
// Prints figures, asserts nothing.
//
//   node dist/bench/spool-cost.js [SPANS [DIR]]     (default 200000, a directory under /tmp)
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { createTraceRequestEncoder, type EncodedSpan } from '../src/export/otlp-trace-encoder.js';
import { createEncodedSpanCodec } from '../src/export/encoded-span-record.js';
import { openSpanSpool } from '../src/export/span-spool.js';
import { createSpanOwners } from '../src/attribute/span-owner.js';
import { connectionSpan } from './export-ceiling.js';

const BATCH = 2048;

export interface SpoolCost {
  spansPerSec: number;
  cpuMsPer1000: number;
}

export interface SpoolCostReport {
  spans: number;
  /** record bytes per span on disk (the span's protobuf, its owner, 12 bytes of framing) */
  bytesPerSpan: number;
  write: SpoolCost;
  read: SpoolCost;
}

function measure(n: number, run: () => void): SpoolCost {
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  run();
  const wall = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  return { spansPerSec: Math.round(n / wall), cpuMsPer1000: Number((((cpu.user + cpu.system) / 1000) / (n / 1000)).toFixed(3)) };
}

export function spoolCost(spans: number, dir: string): SpoolCostReport {
  const encoder = createTraceRequestEncoder(resourceFromAttributes({ 'service.name': 'tcpspan-bench' }), { name: 'tcpspan', version: '0.1.0' });
  const owners = createSpanOwners();
  const items: EncodedSpan[] = [];
  for (let i = 0; i < spans; i++) {
    const s = connectionSpan(i);
    // a few applications' spans, as attribution gives them owners
    const owner = owners.of(`service-${i % 8}`, (i % 8).toString(16).repeat(64), undefined);
    if (owner !== undefined) s.owner = owner;
    items.push(encoder.encodeSpan(s));
  }
  fs.rmSync(dir, { recursive: true, force: true });
  const spool = openSpanSpool({ dir, maxBytes: 4 * 1024 * 1024 * 1024, codec: createEncodedSpanCodec() });
  const write = measure(spans, () => {
    for (let i = 0; i < spans; i += BATCH) spool.append(items.slice(i, i + BATCH));
  });
  const bytesPerSpan = Math.round(spool.bytes() / spans);
  let read = 0;
  const readCost = measure(spans, () => {
    for (let b = spool.read(BATCH); b !== undefined; b = spool.read(BATCH)) {
      read += b.items.length;
      spool.ack(b);
    }
  });
  if (read !== spans) throw new Error(`read back ${read} of ${spans}`);
  spool.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return { spans, bytesPerSpan, write, read: readCost };
}

if (require.main === module) {
  const spans = Number(process.argv[2] ?? 200_000);
  const dir = process.argv[3] ?? path.join(os.tmpdir(), `tcpspan-spool-bench-${process.pid}`);
  const r = spoolCost(spans, dir);
  process.stdout.write(`spool (${dir}, ${r.spans} connection spans, ${r.bytesPerSpan} bytes each on disk):\n` +
    `  write (collector away):    ${r.write.spansPerSec} spans/s, ${r.write.cpuMsPer1000} CPU ms per 1000 spans\n` +
    `  read back and acknowledge: ${r.read.spansPerSec} spans/s, ${r.read.cpuMsPer1000} CPU ms per 1000 spans\n`);
}
