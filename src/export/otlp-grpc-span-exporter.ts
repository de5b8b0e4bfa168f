// Connection spans over OTLP gRPC: the SDK's gRPC transport (endpoint, TLS, headers,
// compression and OTEL_EXPORTER_OTLP_* variables exactly as OTLPTraceExporter reads
// them), fed with requests that otlp-trace-encoder.ts writes straight from SpanData.
import type { ExportResult } from '@opentelemetry/core';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExportDelegate } from '@opentelemetry/otlp-grpc-exporter-base';
import { ProtobufTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { SpanData } from '../correlate/span-data.js';
import { createTraceRequestEncoder } from './otlp-trace-encoder.js';

/** What the export queue drives: SpanExporter's shape, over SpanData. */
export interface ConnectionSpanExporter {
  export(spans: SpanData[], resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
  forceFlush?(): Promise<void>;
}

export interface OtlpGrpcSpanExporterOptions {
  /** e.g. http://127.0.0.1:4317; the OTEL_EXPORTER_OTLP_* variables apply as for the SDK's exporter */
  url: string;
  timeoutMillis: number;
}

const GRPC_SERVICE = 'TraceExportService';
const GRPC_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

export function createOtlpGrpcSpanExporter(opts: OtlpGrpcSpanExporterOptions, resource: Resource,
                                           scope: InstrumentationScope): ConnectionSpanExporter {
  const encoder = createTraceRequestEncoder(resource, scope);
  const serializer: ISerializer<SpanData[], IExportTraceServiceResponse> = {
    serializeRequest: (spans) => encoder.encode(spans),
    deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
  };
  const delegate = createOtlpGrpcExportDelegate(
    convertLegacyOtlpGrpcOptions({ url: opts.url, timeoutMillis: opts.timeoutMillis }, 'TRACES'),
    serializer, 'otlp_grpc_span_exporter', { name: 'span', countItems: (spans: SpanData[]) => spans.length },
    undefined, GRPC_SERVICE, GRPC_PATH);
  return new OTLPExporterBase<SpanData[]>(delegate);
}
