// Connection spans over OTLP gRPC: the SDK's gRPC transport (endpoint, TLS, headers,
// compression and OTEL_EXPORTER_OTLP_* variables exactly as OTLPTraceExporter reads
// them), fed with requests that otlp-trace-encoder.ts writes. Each span is encoded when
// it is queued, so the queue holds bytes (with the span's service, for its resource), not
// span objects.
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import { createOtlpNetworkExportDelegate, OTLPExporterBase } from '@opentelemetry/otlp-exporter-base';
import { convertLegacyOtlpGrpcOptions, createOtlpGrpcExporterMetrics } from '@opentelemetry/otlp-grpc-exporter-base';
import { ProtobufTraceSerializer, type IExportTraceServiceResponse, type ISerializer } from '@opentelemetry/otlp-transformer';
import type { SpanData } from '../correlate/span-data.js';
import { createTraceRequestEncoder, type EncodedSpan } from './otlp-trace-encoder.js';
import type { BatchExporter } from './span-export-queue.js';
import { createGrpcTransport } from './otlp-grpc-transport.js';

export interface OtlpGrpcSpanExporterOptions {
  /** e.g. http://127.0.0.1:4317; the OTEL_EXPORTER_OTLP_* variables apply as for the SDK's exporter */
  url: string;
  timeoutMillis: number;
  /** the channel's longest wait between reconnection attempts (default 30 s): export.batch.retryMaxDelayMs */
  maxReconnectBackoffMs?: number;
}

/** An exporter of encoded spans, and the encoding it takes. */
export interface OtlpGrpcSpanExporter {
  /** A span's protobuf bytes and its service, to queue. */
  encode(span: SpanData): EncodedSpan;
  readonly exporter: BatchExporter<EncodedSpan>;
}

const GRPC_SERVICE = 'TraceExportService';
const GRPC_PATH = '/opentelemetry.proto.collector.trace.v1.TraceService/Export';

export function createOtlpGrpcSpanExporter(opts: OtlpGrpcSpanExporterOptions, resource: Resource,
                                           scope: InstrumentationScope): OtlpGrpcSpanExporter {
  const encoder = createTraceRequestEncoder(resource, scope);
  const serializer: ISerializer<EncodedSpan[], IExportTraceServiceResponse> = {
    serializeRequest: (spans) => encoder.encodeEncoded(spans),
    deserializeResponse: (data) => ProtobufTraceSerializer.deserializeResponse(data),
  };
  // the SDK's createOtlpGrpcExportDelegate, with its transport swapped for one whose reconnect backoff is bounded
  const options = convertLegacyOtlpGrpcOptions({ url: opts.url, timeoutMillis: opts.timeoutMillis }, 'TRACES');
  const delegate = createOtlpNetworkExportDelegate(options, serializer,
    createOtlpGrpcExporterMetrics('otlp_grpc_span_exporter', { name: 'span', countItems: (spans: EncodedSpan[]) => spans.length }, options.url, undefined),
    createGrpcTransport({
      address: options.url, credentials: options.credentials, metadata: options.metadata, compression: options.compression,
      ...(options.userAgent !== undefined && { userAgent: options.userAgent }), grpcName: GRPC_SERVICE, grpcPath: GRPC_PATH,
      maxReconnectBackoffMs: opts.maxReconnectBackoffMs ?? 30_000,
    }));
  return { encode: (span) => encoder.encodeSpan(span), exporter: new OTLPExporterBase<EncodedSpan[]>(delegate) };
}
