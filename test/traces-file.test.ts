// The OTLP/JSON lines exporter: what a Collector's otlpjsonfile receiver would read.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { ExportResultCode, type ExportResult, type InstrumentationScope } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { toHrTime, type SpanData } from '../src/correlate/span-data.js';
import { createSpanOwners } from '../src/attribute/span-owner.js';
import { createSpanExportQueue, type BatchExporter } from '../src/export/span-export-queue.js';
import { createTracesFileExporter, tracesFileProblem } from '../src/export/traces-file.js';

const RESOURCE = resourceFromAttributes({ 'service.name': 'tcpspan-test', 'host.name': 'lab-1' });
const SCOPE: InstrumentationScope = { name: 'tcpspan', version: '0.1.0' };
const T0 = 1_763_000_000_123_456_789n;

const CLIENT: SpanData = {
  name: 'tcp.connection', kind: 'client', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7',
  startTime: toHrTime(T0), endTime: toHrTime(T0 + 48_211_500n),
  attributes: {
    'network.transport': 'tcp', 'network.type': 'ipv4', 'network.peer.address': '10.0.0.2', 'network.peer.port': 443,
    'tcp.close.reason': 'fin', 'tcp.rtt.avg': 0.0000875, 'tcpspan.socket.cookie': 81237,
  },
  events: [
    { name: 'tcp.state_change', time: toHrTime(T0), attributes: { 'network.connection.state': 'syn_sent' } },
    { name: 'tcp.state_change', time: toHrTime(T0 + 118_000n), attributes: { 'network.connection.state': 'established' } },
  ],
  droppedEventsCount: 0,
  status: { code: 'unset' },
};

const SERVER: SpanData = {
  name: 'tcp.connection', kind: 'server', traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: 'b7ad6b7169203331',
  parentSpanId: '00f067aa0ba902b7',
  startTime: toHrTime(T0 + 40_000n), endTime: toHrTime(T0 + 48_260_000n),
  attributes: { 'network.transport': 'tcp', 'tcp.close.reason': 'reset_sent', 'error.type': 'reset_sent', 'tcpspan.evicted': true },
  events: [{ name: 'tcp.reset_sent', time: toHrTime(T0 + 48_260_000n), attributes: { 'network.connection.state': 'established' } }],
  droppedEventsCount: 4,
  status: { code: 'error', message: 'connection reset by this end' },
};

/** The OTLP/JSON span the Collector would read for `d`, written out by the JSON mapping rules. */
const OTLP_CLIENT = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7',
  name: 'tcp.connection', kind: 3,
  startTimeUnixNano: '1763000000123456789', endTimeUnixNano: '1763000000171668289',
  attributes: [
    { key: 'network.transport', value: { stringValue: 'tcp' } },
    { key: 'network.type', value: { stringValue: 'ipv4' } },
    { key: 'network.peer.address', value: { stringValue: '10.0.0.2' } },
    { key: 'network.peer.port', value: { intValue: 443 } },
    { key: 'tcp.close.reason', value: { stringValue: 'fin' } },
    { key: 'tcp.rtt.avg', value: { doubleValue: 0.0000875 } },
    { key: 'tcpspan.socket.cookie', value: { intValue: 81237 } },
  ],
  droppedAttributesCount: 0,
  events: [
    {
      attributes: [{ key: 'network.connection.state', value: { stringValue: 'syn_sent' } }],
      name: 'tcp.state_change', timeUnixNano: '1763000000123456789', droppedAttributesCount: 0,
    },
    {
      attributes: [{ key: 'network.connection.state', value: { stringValue: 'established' } }],
      name: 'tcp.state_change', timeUnixNano: '1763000000123574789', droppedAttributesCount: 0,
    },
  ],
  droppedEventsCount: 0,
  status: { code: 0 },
  links: [],
  droppedLinksCount: 0,
  flags: 0x101,
};

const OTLP_SERVER = {
  traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: 'b7ad6b7169203331', parentSpanId: '00f067aa0ba902b7',
  name: 'tcp.connection', kind: 2,
  startTimeUnixNano: '1763000000123496789', endTimeUnixNano: '1763000000171716789',
  attributes: [
    { key: 'network.transport', value: { stringValue: 'tcp' } },
    { key: 'tcp.close.reason', value: { stringValue: 'reset_sent' } },
    { key: 'error.type', value: { stringValue: 'reset_sent' } },
    { key: 'tcpspan.evicted', value: { boolValue: true } },
  ],
  droppedAttributesCount: 0,
  events: [{
    attributes: [{ key: 'network.connection.state', value: { stringValue: 'established' } }],
    name: 'tcp.reset_sent', timeUnixNano: '1763000000171716789', droppedAttributesCount: 0,
  }],
  droppedEventsCount: 4,
  status: { code: 2, message: 'connection reset by this end' },
  links: [],
  droppedLinksCount: 0,
  flags: 0x301,
};

function request(spans: object[]) {
  return {
    resourceSpans: [{
      resource: {
        attributes: [
          { key: 'service.name', value: { stringValue: 'tcpspan-test' } },
          { key: 'host.name', value: { stringValue: 'lab-1' } },
        ],
        droppedAttributesCount: 0,
      },
      scopeSpans: [{ scope: { name: 'tcpspan', version: '0.1.0' }, spans }],
    }],
  };
}

function exportNow(exporter: BatchExporter<SpanData>, spans: SpanData[]): Promise<ExportResult> {
  return new Promise((resolve) => exporter.export(spans, resolve));
}

describe('TracesFileExporter', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tcpspan-traces-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  describe('OTLP/JSON lines', () => {
    it('should write one ExportTraceServiceRequest per line with hex ids and string unix nanos', async () => {
      const file = path.join(dir, 'traces.jsonl');
      const exporter = createTracesFileExporter(file, RESOURCE, SCOPE);

      assert.deepStrictEqual(await exportNow(exporter, [CLIENT, SERVER]), { code: ExportResultCode.SUCCESS });
      assert.deepStrictEqual(await exportNow(exporter, [SERVER]), { code: ExportResultCode.SUCCESS });
      await exporter.shutdown();

      const text = fs.readFileSync(file, 'utf8');
      assert.ok(text.endsWith('\n'));
      const lines = text.slice(0, -1).split('\n').map((l) => JSON.parse(l));
      assert.deepStrictEqual(lines, [request([OTLP_CLIENT, OTLP_SERVER]), request([OTLP_SERVER])]);
    });

    it('should write one ResourceSpans per owner, under tcpspan\'s resource with the owner\'s service.name, container.id and k8s.pod.uid', async () => {
      const file = path.join(dir, 'traces.jsonl');
      const exporter = createTracesFileExporter(file, RESOURCE, SCOPE);
      const owners = createSpanOwners();
      const [cid, uid] = ['c'.repeat(64), '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f'];
      const checkout: SpanData = { ...CLIENT, owner: owners.of('checkout', cid, uid)! };
      const docker: SpanData = { ...SERVER, owner: owners.of(undefined, cid, undefined)! };
      assert.deepStrictEqual(await exportNow(exporter, [checkout, SERVER, docker, checkout]), { code: ExportResultCode.SUCCESS });
      await exporter.shutdown();
      const [line] = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      const own = request([OTLP_SERVER]).resourceSpans[0]!;
      const str = (key: string, value: string) => ({ key, value: { stringValue: value } });
      assert.deepStrictEqual(line, {
        resourceSpans: [{
          resource: {
            attributes: [str('host.name', 'lab-1'), str('service.name', 'checkout'), str('container.id', cid), str('k8s.pod.uid', uid)],
            droppedAttributesCount: 0,
          },
          scopeSpans: [{ scope: { name: 'tcpspan', version: '0.1.0' }, spans: [OTLP_CLIENT, OTLP_CLIENT] }],
        }, own, {
          // no service named: tcpspan's service.name stays
          resource: { attributes: [...own.resource.attributes, str('container.id', cid)], droppedAttributesCount: 0 },
          scopeSpans: [{ scope: { name: 'tcpspan', version: '0.1.0' }, spans: [OTLP_SERVER] }],
        }],
      });
    });

    it('should append to an existing file', async () => {
      const file = path.join(dir, 'traces.jsonl');
      fs.writeFileSync(file, '{"resourceSpans":[]}\n');
      const exporter = createTracesFileExporter(file, RESOURCE, SCOPE);
      await exportNow(exporter, [CLIENT]);
      await exporter.shutdown();
      const lines = fs.readFileSync(file, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
      assert.deepStrictEqual(lines, [{ resourceSpans: [] }, request([OTLP_CLIENT])]);
    });
  });

  describe('errors', () => {
    it('should report a file it cannot open through the export result, not throw', async () => {
      const exporter = createTracesFileExporter(path.join(dir, 'missing-dir', 'traces.jsonl'), RESOURCE, SCOPE);
      const result = await exportNow(exporter, [CLIENT]);
      assert.equal(result.code, ExportResultCode.FAILED);
      assert.match(String(result.error?.message), /cannot write traces file .*missing-dir.*ENOENT/);
      await exporter.shutdown();
    });

    it('should fail exports after shutdown', async () => {
      const exporter = createTracesFileExporter(path.join(dir, 'traces.jsonl'), RESOURCE, SCOPE);
      await exporter.shutdown();
      await exporter.shutdown(); // idempotent
      const result = await exportNow(exporter, [CLIENT]);
      assert.equal(result.code, ExportResultCode.FAILED);
      assert.match(String(result.error?.message), /shut down/);
    });
  });

  describe('a full disk', () => {
    // a real 64 KiB tmpfs: writes fail with ENOSPC part way through a request
    let mnt: string;
    before(function () {
      if (process.getuid?.() !== 0) this.skip(); // mounting needs root
      mnt = fs.mkdtempSync(path.join(os.tmpdir(), 'tcpspan-full-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tcpspan-test', mnt]);
    });
    afterEach(() => {
      if (mnt !== undefined) for (const f of fs.readdirSync(mnt)) fs.rmSync(path.join(mnt, f)); // each test starts with an empty disk
    });
    after(() => {
      if (mnt === undefined) return;
      execFileSync('umount', [mnt]);
      fs.rmSync(mnt, { recursive: true, force: true });
    });

    /** Spans per line, asserting the file is whole lines that each parse. */
    function linesOf(file: string): number[] {
      const text = fs.readFileSync(file, 'utf8');
      if (text === '') return [];
      assert.ok(text.endsWith('\n'), `the file ends in a partial line of ${text.length - text.lastIndexOf('\n') - 1} bytes`);
      return text.slice(0, -1).split('\n').map((l, i) => {
        const req = JSON.parse(l) as { resourceSpans: { scopeSpans: { spans: unknown[] }[] }[] };
        assert.ok(req.resourceSpans.length > 0, `line ${i + 1}`);
        return req.resourceSpans[0]!.scopeSpans[0]!.spans.length;
      });
    }

    it('should leave whole lines only, and fail each request it could not write whole', async () => {
      const file = path.join(mnt, 'direct.jsonl');
      const exporter = createTracesFileExporter(file, RESOURCE, SCOPE);
      let written = 0;
      const failures: string[] = [];
      // requests of growing size, so some fail part way and smaller ones still fit after
      for (let i = 1; failures.length < 4 && i < 200; i++) {
        const spans = Array.from({ length: (i % 7) * 5 + 1 }, (_, k) => (k % 2 ? SERVER : CLIENT));
        const result = await exportNow(exporter, spans);
        if (result.code === ExportResultCode.SUCCESS) written += spans.length;
        else failures.push(String(result.error?.message));
      }
      await exporter.shutdown();
      assert.equal(failures.length, 4, 'the disk never filled');
      for (const f of failures) assert.match(f, /^cannot write traces file .*: ENOSPC/);
      const lines = linesOf(file);
      assert.equal(lines.reduce((a, b) => a + b, 0), written, 'every span reported written is in the file, and only those');
    });

    it('should count every span the export queue could not write as dropped, and glue no retry to a partial line', async () => {
      const file = path.join(mnt, 'queued.jsonl');
      const dropped: number[] = [];
      const logs: string[] = [];
      const queue = createSpanExportQueue(createTracesFileExporter(file, RESOURCE, SCOPE), {
        maxQueueSize: 4096, maxExportBatchSize: 16, scheduledDelayMs: 1, exportTimeoutMs: 5000,
        maxRetries: 2, retryInitialDelayMs: 2, onDropped: (n) => dropped.push(n), log: (m) => logs.push(m),
      });
      const total = 600;
      for (let i = 0; i < total; i++) assert.ok(queue.add(i % 2 ? SERVER : CLIENT));
      await queue.shutdown(20_000);
      const stats = queue.stats();
      const inFile = linesOf(file).reduce((a, b) => a + b, 0);
      assert.equal(stats.exported, inFile, 'what the queue counts as exported is what the file holds');
      assert.ok(stats.dropped.export_failed > 0, 'the disk never filled');
      // failures in a row slow the retries down (the disk stays full): what was not tried again by the deadline is shutdown_deadline
      assert.equal(stats.exported + stats.dropped.export_failed + stats.dropped.shutdown_deadline, total, 'every span written or counted as dropped ' + JSON.stringify(stats));
      assert.equal(dropped.reduce((a, b) => a + b, 0), stats.dropped.export_failed + stats.dropped.shutdown_deadline);
      assert.ok(stats.retries > 0);
      assert.ok(logs.some((m) => /export failed \(cannot write traces file .*ENOSPC/.test(m)), logs.join('\n'));
    });
  });

  describe('tracesFileProblem', () => {
    it('should accept stdout, a new file and an existing one, creating the new one', () => {
      assert.equal(tracesFileProblem('-'), undefined);
      const file = path.join(dir, 'new.jsonl');
      assert.equal(tracesFileProblem(file), undefined);
      assert.ok(fs.existsSync(file));
      assert.equal(tracesFileProblem(file), undefined);
    });

    it('should name the reason and the fix for each path it cannot append to', () => {
      assert.equal(tracesFileProblem(dir),
        `cannot open it for appending (EISDIR: illegal operation on a directory): it is a directory; name a file in it, e.g. ${dir}/traces.jsonl, or '-' for stdout`);
      assert.equal(tracesFileProblem(path.join(dir, 'nope', 't.jsonl')),
        `cannot open it for appending (ENOENT: no such file or directory): its directory ${dir}/nope does not exist; create it or choose another path, or '-' for stdout`);
      assert.match(String(tracesFileProblem('/proc/x')), /^cannot open it for appending \(ENOENT: .*\): \/proc cannot hold new files; choose another path/);
      fs.writeFileSync(path.join(dir, 'plain'), '');
      assert.match(String(tracesFileProblem(path.join(dir, 'plain', 't.jsonl'))), /^cannot open it for appending \(ENOTDIR: .*\): a part of the path is not a directory/);
    });
  });
});
