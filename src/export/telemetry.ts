// The OpenTelemetry SDK side of the bridge: resource, meter provider (NodeSDK), metric export.
import { metrics, type Meter } from '@opentelemetry/api';
import { NodeSDK } from '@opentelemetry/sdk-node';
import { defaultResource, detectResources, envDetector, hostDetector, osDetector, resourceFromAttributes, type Resource } from '@opentelemetry/resources';
import { PeriodicExportingMetricReader, type IMetricReader } from '@opentelemetry/sdk-metrics';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { createConnectionMetrics, type ConnectionMetrics } from './connection-metrics.js';

export interface TelemetryOptions {
  serviceName: string;
  /** OTLP gRPC endpoint for metrics; undefined: metrics are kept in-process only. */
  metricsEndpoint?: string;
  metricIntervalMs: number;
  exportTimeoutMs: number;
}

export interface Telemetry {
  readonly resource: Resource;
  readonly meter: Meter;
  /** What the connections did: record each finished end here. */
  readonly connections: ConnectionMetrics;
  /** Exports the last metrics and stops. Idempotent. */
  shutdown(): Promise<void>;
}

/**
 * The resource: service.name (default tcpspan, OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win),
 * host and OS. No process detector: every span carries the process of its connection
 * (process.pid), and tcpspan's own pid on the resource would read as if it were that.
 */
export async function createResource(serviceName: string): Promise<Resource> {
  const detected = detectResources({ detectors: [hostDetector, osDetector, envDetector] });
  await detected.waitForAsyncAttributes?.();
  return defaultResource().merge(resourceFromAttributes({ 'service.name': serviceName })).merge(detected);
}

export async function createTelemetry(opts: TelemetryOptions): Promise<Telemetry> {
  const resource = await createResource(opts.serviceName);
  const connections = createConnectionMetrics(resource);
  const readers: IMetricReader[] = [];
  if (opts.metricsEndpoint) {
    readers.push(new PeriodicExportingMetricReader({
      metricProducers: [connections.producer],
      exporter: new OTLPMetricExporter({ url: opts.metricsEndpoint, timeoutMillis: opts.exportTimeoutMs }),
      exportIntervalMillis: opts.metricIntervalMs,
      exportTimeoutMillis: Math.min(opts.exportTimeoutMs, opts.metricIntervalMs),
    }));
  }
  const sdk = new NodeSDK({
    resource, autoDetectResources: false, metricReaders: readers,
    spanProcessors: [], instrumentations: [], textMapPropagator: null,
  });
  sdk.start();
  let stopping: Promise<void> | undefined;
  return {
    resource,
    meter: metrics.getMeter('tcpspan'),
    connections,
    // shutdown alone: forceFlush() then shutdown() would export everything twice
    shutdown: () => (stopping ??= sdk.shutdown().catch(() => undefined)),
  };
}
