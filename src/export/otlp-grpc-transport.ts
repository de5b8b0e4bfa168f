// The gRPC transport of the OTLP span exporter: the SDK's GrpcExporterTransport
// (@opentelemetry/otlp-grpc-exporter-base 0.301), with the channel's reconnect backoff bounded.
//
// Why: grpc-js backs off reconnecting a channel whose connection failed by 1 s × 1.6 per
// attempt, up to 120 s, and until the next attempt every call fails at once with UNAVAILABLE.
// After a 30 s outage the channel next tried ~13 s after the collector was back, after a few
// minutes' outage it would wait up to two minutes: the queue's retries (export.batch.retryMaxDelayMs)
// would only meet a channel still in backoff. The SDK's transport passes no channel options, so
// this one is the same code with `grpc.initial_reconnect_backoff_ms` / `grpc.max_reconnect_backoff_ms`
// set. Credentials, metadata (headers), compression and user agent come from the SDK's options
// as before (convertLegacyOtlpGrpcOptions), so the OTEL_EXPORTER_OTLP_* variables work unchanged.
import * as grpc from '@grpc/grpc-js';
import type { ExportResponse, IExporterTransport } from '@opentelemetry/otlp-exporter-base';

export interface GrpcTransportOptions {
  /** host:port or a URL, as the SDK's options give it */
  address: string;
  credentials(): grpc.ChannelCredentials;
  metadata(): grpc.Metadata;
  compression: 'gzip' | 'none' | string;
  userAgent?: string;
  grpcName: string;
  grpcPath: string;
  /** the longest wait between two reconnection attempts of the channel */
  maxReconnectBackoffMs: number;
}

const USER_AGENT = 'OTel-OTLP-Exporter-JavaScript';
const DEADLINE_EXCEEDED = 4;
/** as the SDK's transport: a client that keeps missing deadlines is made anew */
const MAX_DEADLINE_EXCEEDED = 5;

export function createGrpcTransport(opts: GrpcTransportOptions): IExporterTransport {
  let client: grpc.Client & { export?: unknown } | undefined;
  let metadata: grpc.Metadata | undefined;
  let deadlines = 0;
  const make = (): void => {
    metadata = opts.metadata();
    const Client = grpc.makeGenericClientConstructor({
      export: {
        path: opts.grpcPath, requestStream: false, responseStream: false,
        requestSerialize: (b: Buffer) => b, requestDeserialize: (b: Buffer) => b,
        responseSerialize: (b: Buffer) => b, responseDeserialize: (b: Buffer) => b,
      },
    }, opts.grpcName);
    client = new Client(opts.address, opts.credentials(), {
      'grpc.default_compression_algorithm': opts.compression === 'gzip' ? 2 : 0,
      'grpc.primary_user_agent': opts.userAgent ? `${opts.userAgent} ${USER_AGENT}` : USER_AGENT,
      'grpc.initial_reconnect_backoff_ms': Math.min(1000, opts.maxReconnectBackoffMs),
      'grpc.max_reconnect_backoff_ms': opts.maxReconnectBackoffMs,
    });
    deadlines = 0;
  };
  return {
    send(data: Uint8Array, timeoutMillis: number): Promise<ExportResponse> {
      if (client === undefined) {
        try {
          make();
        } catch (error) {
          return Promise.resolve({ status: 'failure', error: error as Error });
        }
      }
      const c = client as unknown as { export(b: Buffer, m: grpc.Metadata, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, r?: Buffer) => void): void };
      return new Promise((resolve) => {
        c.export(Buffer.from(data), metadata!, { deadline: Date.now() + timeoutMillis }, (err, response) => {
          if (err) {
            resolve({ status: 'failure', error: err });
            if (err.code === DEADLINE_EXCEEDED && ++deadlines > MAX_DEADLINE_EXCEEDED) {
              client?.close();
              client = undefined;
            }
          } else {
            deadlines = 0;
            resolve({ status: 'success', data: response });
          }
        });
      });
    },
    shutdown(): void {
      client?.close();
    },
  };
}
