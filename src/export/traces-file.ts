// Spans as OTLP/JSON lines: one ExportTraceServiceRequest per line, the format the
// Collector's file exporter writes and its otlpjsonfile receiver reads; within a line, one
// ResourceSpans per span owner (owner-resource.ts).
import fs from 'node:fs';
import nodePath from 'node:path';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { JsonTraceSerializer } from '@opentelemetry/otlp-transformer';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { SpanData } from '../correlate/span-data.js';
import { toReadableSpan } from './readable-span.js';
import { createResourceFor, type ResourceFor } from './owner-resource.js';
import type { BatchExporter } from './span-export-queue.js';

const NEWLINE = Buffer.from('\n');

/**
 * Appends to `path` ('-': stdout), creating it when missing. Write errors come back
 * as FAILED export results (the queue retries them, then counts the spans as
 * export_failed), never as exceptions.
 *
 * Whole lines or nothing: a request is one line written by one chain of write calls,
 * and a write that fails part way (ENOSPC on a full disk, EIO, EFBIG) is undone by
 * truncating the file back to its size before the write, so every line in the file
 * parses and a retried request starts on a line of its own. Truncating back (rather
 * than writing to a temporary file and renaming) keeps appends to a file other tools
 * tail or rotate, and costs nothing on the good path but one fstat. It assumes tcpspan
 * is the file's only writer. stdout cannot be truncated: there a partial line can stay.
 *
 * shutdown() closes the file (stdout stays open).
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
  /** set while a failed write's partial line is still in the file: its size before that write */
  private _repairTo: number | undefined;
  private readonly _write: Write;
  /** EPIPE and the like also come as 'error' events, which would crash the process unheard */
  private readonly _onStdoutError = (): void => undefined;
  /** one resource per owner: the serializer writes one ResourceSpans per resource */
  private readonly _resourceFor: ResourceFor;

  constructor(path: string, resource: Resource, private readonly _scope: InstrumentationScope) {
    this._path = path;
    this._resourceFor = createResourceFor(resource);
    if (path === '-') {
      process.stdout.on('error', this._onStdoutError);
      this._write = (data) => new Promise((resolve, reject) => {
        process.stdout.write(data, (err) => (err ? reject(err) : resolve()));
      });
    } else {
      this._write = (data) => this._append(data);
    }
  }

  export(spans: SpanData[], resultCallback: (result: ExportResult) => void): void {
    if (this._closed) {
      resultCallback({ code: ExportResultCode.FAILED, error: new Error(`traces file ${this._path}: exporter is shut down`) });
      return;
    }
    let line: Buffer;
    try {
      const body = JsonTraceSerializer.serializeRequest(spans.map((d) => toReadableSpan(d, this._resourceFor(d.owner), this._scope)));
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

  /** One request, whole or not at all (writes are chained: one at a time). */
  private async _append(data: Buffer): Promise<void> {
    const file = await (this._file ??= this._open());
    if (this._repairTo !== undefined) {
      // the last failed write could not be undone: no new line may be glued to its remains
      await this._truncate(file, this._repairTo);
    }
    const before = (await file.stat()).size;
    try {
      // writeFile loops over short writes; O_APPEND puts every request at the end
      await file.writeFile(data);
    } catch (err) {
      await this._truncate(file, before).catch(() => undefined);
      throw err;
    }
  }

  /** Cuts the file back to `size` bytes; remembers to try again when that fails. */
  private async _truncate(file: fs.promises.FileHandle, size: number): Promise<void> {
    this._repairTo = size;
    try {
      await file.truncate(size);
    } catch (err) {
      throw new Error(`a partial line from an earlier failed write could not be removed (${(err as Error).message})`, { cause: err });
    }
    this._repairTo = undefined;
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

/**
 * Why `path` cannot take OTLP/JSON lines, with the fix, or undefined when it can: opens it
 * for appending (creating it, as the exporter would) and closes it again, so a path that
 * would fail at the first export is refused at start instead. '-' (stdout) always can.
 */
export function tracesFileProblem(path: string): string | undefined {
  if (path === '' || path === '-') return undefined;
  let fd: number | undefined;
  try {
    // O_NONBLOCK: a FIFO without a reader fails (ENXIO) instead of blocking start-up
    fd = fs.openSync(path, fs.constants.O_WRONLY | fs.constants.O_APPEND | fs.constants.O_CREAT | fs.constants.O_NONBLOCK, 0o666);
    return undefined;
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const dir = nodePath.dirname(nodePath.resolve(path));
    const why = `cannot open it for appending (${e.code ?? 'error'}: ${e.message.replace(/^\w+: /, '').replace(/, open '.*'$/, '')})`;
    let fix = FIXES[e.code ?? ''] ?? 'choose a writable file path';
    if (e.code === 'EISDIR') fix = `it is a directory; name a file in it, e.g. ${nodePath.join(path, 'traces.jsonl')}`;
    if (e.code === 'ENOENT') {
      fix = fs.existsSync(dir) ? `${dir} cannot hold new files; choose another path`
        : `its directory ${dir} does not exist; create it or choose another path`;
    }
    return `${why}: ${fix}, or '-' for stdout`;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

const FIXES: Record<string, string> = {
  ENOTDIR: 'a part of the path is not a directory; choose another path',
  EACCES: 'tcpspan\'s user may not write there; grant it write access or choose another path',
  EPERM: 'tcpspan\'s user may not write there; grant it write access or choose another path',
  EROFS: 'the file system is read-only; choose a path on a writable one',
  ENXIO: 'it is a FIFO or device nobody reads; choose a regular file',
  ENOSPC: 'the file system is full; free space or choose another path',
};
