// `tcpspan run`: every TCP connection becomes a span (console lines by default, OTLP when configured).
import { loadConfig, resolveExporters, settingError, type TcpspanConfig } from '../config/config.js';
import { parseFlags } from '../config/flags.js';
import { usageText } from '../config/usage-text.js';
import { buildFilter } from '../capture/filter.js';
import { openCapture } from '../capture/probes.js';
import { createClock } from '../decode/format.js';
import { createBridge } from '../pipeline/bridge.js';
import { createConsoleSink, createExporterSink, SCOPE } from '../pipeline/sinks.js';
import type { SpanSink } from '../pipeline/bridge.js';
import { createTelemetry } from '../export/telemetry.js';
import { observeHealth } from '../export/bridge-metrics.js';
import { createTracesFileExporter, tracesFileProblem } from '../export/traces-file.js';
import { createOtlpGrpcSpanExporter } from '../export/otlp-grpc-span-exporter.js';
import { onShutdownSignal } from './common.js';
import { shutdownLine } from './shutdown-line.js';

const say = (m: string): void => { process.stderr.write(`tcpspan: ${m}\n`); };

export async function runRun(argv: string[]): Promise<number> {
  const { help, values } = parseFlags('run', argv);
  if (help) {
    process.stdout.write(`${usageText('run')}\n`);
    return 0;
  }
  // every bad value is refused here, before anything is attached
  const cfg = loadConfig(values);
  const fileProblem = tracesFileProblem(cfg.export.tracesFile);
  if (fileProblem !== undefined) throw settingError(cfg, 'export.tracesFile', fileProblem);
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
    const otlp = createOtlpGrpcSpanExporter({ url: x.tracesEndpoint, timeoutMillis: x.batch.exportTimeoutMs }, telemetry.resource, SCOPE);
    sinks.push(createExporterSink('otlp', otlp.exporter, otlp.encode, queue, say));
  }
  if (x.tracesFile) {
    sinks.push(createExporterSink('file', createTracesFileExporter(x.tracesFile, telemetry.resource, SCOPE), (s) => s, queue, say));
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
      maxSockets: cfg.capture.maxSockets,
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
  say(shutdownLine(summary, summary.kernelCounters));
  return 0;
}
