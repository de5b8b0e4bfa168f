// Spans as OTLP/JSON lines: one ExportTraceServiceRequest per line, the format the
// Collector's file exporter writes and its otlpjsonfile receiver reads.
import fs from 'node:fs';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { SpanData } from '../correlate/span-data.js';
import { toReadableSpan } from './readable-span.js';
import type { BatchExporter } from './span-export-queue.js';

const NEWLINE = Buffer.from('\n');

/**
 * Appends to `path` ('-': stdout), creating it when missing. Write errors come back
 * as FAILED export results (the queue retries them), never as exceptions; a request
 * is written with one write call so lines stay whole. shutdown() closes the file
 * (stdout stays open).
 */
export function createTracesFileExporter(path: string | '-', resource: Resource, scope: InstrumentationScope): BatchExporter<SpanData> {
  return new TracesFileExporter(path, resource, scope);
}

type Write = (data: Buffer) => Promise<void>;

class TracesFileExporter implements BatchExporter<SpanData> {
  private readonly _path: string;
  private _file: Promise<fs.promises.FileHandle> | undefined;
  /** the last write; writes are chained so requests keep their order */
  private _tail: Promise<void> = Promise.resolve();
  private _closed = false;
  private readonly _write: Write;
  /** EPIPE and the like also come as 'error' events, which would crash the process unheard */
  private readonly _onStdoutError = (): void => undefined;

  constructor(path: string, private readonly _resource: Resource, private readonly _scope: InstrumentationScope) {
    this._path = path;
    if (path === '-') {
      process.stdout.on('error', this._onStdoutError);
      this._write = (data) => new Promise((resolve, reject) => {
        process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
      });
    } else {
      this._write = async (data) => {
        const file = await (this._file ??= this._open());
        // writeFile loops over partial writes; O_APPEND puts every request at the end
        await file.writeFile(data);
      };
    }
  }

  export(spans: SpanData[], resultCallback: (result: ExportResult) => void): void {
    if (this._closed) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error(`traces file ${this._path}: exporter is shut down`) });
      return;
    }
    let line: Buffer;
    try {
      const body = JsonTraceSerializer.serializeRequest(spans.map((d) => toReadableSpan(d, this._resource, this._scope)));
      if (body === undefined) throw new Error('the serializer returned nothing');
      line = Buffer.concat([body, NEWLINE]);
    } catch (err) {
      resultCallback({ code: ExportResultCode.FAILED, error: err as Error });
      return;
    }
    this._tail = this._tail.then(() => this._write(line)).then(
      () => resultCallback({ code: ExportResultCode.SUCCESS }),
      (err: Error) => resultCallback({
        code: ExportResultCode.FAILED, error: new Error(`cannot write traces file ${this._path}: ${err.message}`, { cause: err }),
      }));
  }

  forceFlush(): Promise<void> {
    return this._tail;
  }

  async shutdown(): Promise<void> {
    if (this._closed) return;
    this._closed = true;
    await this._tail;
    if (this._path === '-') {
      process.stdout.off('error', this._onStdoutError);
      return;
    }
    const file = this._file;
    this._file = undefined;
    if (file !== undefined) await file.then((f) => f.close()).catch(() => undefined);
  }

  private async _open(): Promise<fs.promises.FileHandle> {
    try {
      return await fs.promises.open(this._path, 'a');
    } catch (err) {
      this._file = undefined; // try again on the next export (the directory may appear)
      throw err;
    }
  }
}
