// `tcpspan run`: every TCP connection becomes a span (console lines by default, OTLP when configured).
import { parseArgs } from 'node:util';
import { loadConfig, resolveExporters, type TcpspanConfig } from '../config/config.js';
import { buildFilter } from '../capture/filter.js';
import { openCapture } from '../capture/probes.js';
import { createClock } from '../decode/format.js';
import { createBridge } from '../pipeline/bridge.js';
import { createConsoleSink, createExporterSink, SCOPE } from '../pipeline/sinks.js';
import type { SpanSink } from '../pipeline/bridge.js';
import { createTelemetry } from '../export/telemetry.js';
import { observeHealth } from '../export/bridge-metrics.js';
import { createTracesFileExporter } from '../export/traces-file.js';
import { createOtlpGrpcSpanExporter } from '../export/otlp-grpc-span-exporter.js';
import { onShutdownSignal } from './common.js';

export const RUN_USAGE = `usage: tcpspan run [--port N]... [--addr CIDR]... [--config FILE] [--otlp-endpoint URL]
                  [--traces-file PATH|-] [--console]
  Turns every TCP connection end into one span. With no OTLP endpoint it prints one line per
  connection; with one (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT) it exports spans and
  metrics over OTLP gRPC. Stops on SIGINT/SIGTERM, flushing what it holds.
  --port N              only connections with port N at either end (repeatable)
  --addr CIDR           only connections with an address in CIDR at either end (repeatable)
  --config FILE         a JSON file of settings (see config/default.json)
  --otlp-endpoint URL   OTLP gRPC endpoint, e.g. http://localhost:4317
  --traces-file PATH    also write spans as OTLP/JSON lines to PATH ('-' for stdout)
  --console             print console lines instead of exporting spans over OTLP`;

const say = (m: string): void => { process.stderr.write(`tcpspan: ${m}\n`); };

export async function runRun(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      port: { type: 'string', multiple: true },
      addr: { type: 'string', multiple: true },
      config: { type: 'string' },
      'otlp-endpoint': { type: 'string' },
      'traces-file': { type: 'string' },
      console: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(`${RUN_USAGE}\n`);
    return 0;
  }
  // every bad value is refused here, before anything is attached
  const cfg = loadConfig({
    ...(values.config !== undefined && { config: values.config }),
    ...(values.port !== undefined && { port: values.port }),
    ...(values.addr !== undefined && { addr: values.addr }),
    ...(values['traces-file'] !== undefined && { tracesFile: values['traces-file'] }),
    ...(values['otlp-endpoint'] !== undefined && { otlpEndpoint: values['otlp-endpoint'] }),
    ...(values.console !== undefined && { console: values.console }),
  });
  return runBridge(cfg);
}

async function runBridge(cfg: TcpspanConfig): Promise<number> {
  const x = cfg.export;
  const { traces: tracesMode, metrics: metricsMode } = resolveExporters(x);
  const telemetry = await createTelemetry({
    serviceName: cfg.service.name,
    ...(metricsMode === 'otlp' && x.metricsEndpoint ? { metricsEndpoint: x.metricsEndpoint } : {}),
    metricIntervalMs: x.metricIntervalMs,
    exportTimeoutMs: x.batch.exportTimeoutMs,
  });
  const queue = x.batch; // export.batch.* are the queue's options, key for key
  const sinks: SpanSink[] = [];
  if (tracesMode === 'otlp') {
    const exporter = createOtlpGrpcSpanExporter({ url: x.tracesEndpoint, timeoutMillis: x.batch.exportTimeoutMs }, telemetry.resource, SCOPE);
    sinks.push(createExporterSink('otlp', exporter, queue, say));
  }
  if (x.tracesFile) {
    sinks.push(createExporterSink('file', createTracesFileExporter(x.tracesFile, telemetry.resource, SCOPE), queue, say));
  }
  if (tracesMode === 'console') {
    // with OTLP/JSON on stdout, readable lines go to stderr
    const out = x.tracesFile === '-' ? process.stderr : process.stdout;
    sinks.push(createConsoleSink((t) => { out.write(t); }));
  }

  let capture;
  try {
    capture = openCapture({
      filter: buildFilter(cfg.filter.ports.map(String), cfg.filter.addrs, cfg.filter.netns),
      ringBytes: cfg.capture.ringBufferBytes,
      synTiming: cfg.capture.synTiming,
      ...(cfg.capture.cgroupPath ? { cgroupPath: cfg.capture.cgroupPath } : {}),
      warn: (m) => say(`warning: ${m}`),
    });
  } catch (err) {
    await Promise.all(sinks.map((s) => s.shutdown(0)));
    await telemetry.shutdown();
    throw err;
  }
  const bridge = createBridge({ capture, clock: createClock(), correlator: cfg.correlator, sinks, onRecord: (r) => telemetry.connections.record(r) });
  observeHealth(telemetry.meter, bridge.health);
  const stopped = new Promise<void>((resolve) => onShutdownSignal(resolve));
  bridge.start();
  say(`running: ${capture.programs.filter((p) => p.attached).length} programs attached; spans to ${sinks.map((s) => s.name).join(', ') || 'nowhere'}` +
    `${metricsMode === 'otlp' ? `; metrics to ${x.metricsEndpoint}` : ''}; SIGINT or SIGTERM to stop`);
  await stopped;

  const summary = await bridge.stop(x.shutdownTimeoutMs);
  await telemetry.shutdown();
  const dropped = Object.entries(summary.dropped).map(([k, n]) => `${k} ${n}`).join(', ') || 'none';
  const lost = Object.values(summary.lostEvents).reduce((a, b) => a + b, 0);
  say(`stopped: ${summary.kernelEvents} kernel events, ${summary.spans} spans (${Object.entries(summary.exported).map(([k, n]) => `${k} ${n}`).join(', ')}), ` +
    `lost kernel events ${lost}, spans dropped: ${dropped}`);
  return 0;
}
