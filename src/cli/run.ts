// `tcpspan run`: every TCP connection becomes a span (console lines by default, OTLP when configured).
import { ConfigError, loadConfig, resolveExporters, settingError, type TcpspanConfig } from '../config/config.js';
import { parseFlags } from '../config/flags.js';
import { usageText } from '../config/usage-text.js';
import { buildFilter } from '../capture/filter.js';
import { openCapture } from '../capture/probes.js';
import { createClock } from '../decode/format.js';
import { createBridge } from '../pipeline/bridge.js';
import { createCgroupAttributor } from '../attribute/cgroup-attribution.js';
import { createConsoleSink, createExporterSink, SCOPE, type ExporterSink } from '../pipeline/sinks.js';
import { createSampler } from '../pipeline/sampler.js';
import type { SpanSink } from '../pipeline/bridge.js';
import { createTelemetry } from '../export/telemetry.js';
import { observeHealth } from '../export/bridge-metrics.js';
import { observeDetect } from '../export/detect-metrics.js';
import { createDetector } from '../detect/detector.js';
import { epochOffset } from '../correlate/span-data.js';
import { createTracesFileExporter, tracesFileProblem } from '../export/traces-file.js';
import { createOtlpGrpcSpanExporter } from '../export/otlp-grpc-span-exporter.js';
import { openSpanSpool, segmentBytesFor, spoolFreeBytes, SpoolError, type SpanSpool } from '../export/span-spool.js';
import { createEncodedSpanCodec } from '../export/encoded-span-record.js';
import type { EncodedSpan } from '../export/otlp-trace-encoder.js';
import { otlpTlsProblem, type OtlpSignal } from '../export/otlp-tls.js';
import { onShutdownSignal } from './common.js';
import { startHealthServer, type HealthServer } from './health-server.js';
import { shutdownLine } from './shutdown-line.js';
import { createProcessServices, hostProcProblem, type ProcessServices } from '../attribute/process-service.js';

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
  checkOtlpTls(cfg);
  return runBridge(cfg);
}

/** The OTLP exporters' certificate and key files, read and parsed now rather than failing every export later. */
function checkOtlpTls(cfg: TcpspanConfig): void {
  const modes = resolveExporters(cfg.export);
  const signals: [OtlpSignal, boolean, string][] = [
    ['TRACES', modes.traces === 'otlp', cfg.export.tracesEndpoint],
    ['METRICS', modes.metrics === 'otlp', cfg.export.metricsEndpoint],
  ];
  for (const [signal, on, url] of signals) {
    if (!on) continue;
    const { error, warning } = otlpTlsProblem(signal, url);
    if (error !== undefined) throw new ConfigError(`export: ${error}`);
    if (warning !== undefined) say(`warning: ${warning}`);
  }
}

type Phase = 'starting' | 'running' | 'stopping';

/** /healthz and /readyz when health.listen is set; a listen error is a setting refused at start. */
async function startHealth(cfg: TcpspanConfig, ready: () => string | undefined): Promise<HealthServer | undefined> {
  if (!cfg.health.listen) return undefined;
  try {
    return await startHealthServer(cfg.health.listen, ready);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const fix = e.code === 'EADDRINUSE' ? 'another process listens there; choose a free port'
      : e.code === 'EACCES' ? 'ports below 1024 need CAP_NET_BIND_SERVICE; choose a port from 1024'
        : 'expected an address of this machine, such as 127.0.0.1:13135';
    throw settingError(cfg, 'health.listen', `cannot listen there (${e.code ?? e.message}): ${fix}`);
  }
}

async function runBridge(cfg: TcpspanConfig): Promise<number> {
  let phase: Phase = 'starting';
  const exporterSinks: ExporterSink[] = [];
  const ready = (): string | undefined => {
    if (phase === 'starting') return 'programs not attached yet';
    if (phase === 'stopping') return 'shutting down';
    for (const s of exporterSinks) {
      const why = s.failing();
      // the first line, cut short: gRPC errors run long
      if (why !== undefined) return `${s.name} export failing: ${short(why)}`;
    }
    return undefined;
  };
  // first, so a bad address is refused before anything is attached
  const health = await startHealth(cfg, ready);
  try {
    return await runPipeline(cfg, exporterSinks, (p) => { phase = p; }, health?.address);
  } finally {
    await health?.close(); // also when start-up fails: an open server would keep the process alive
  }
}

/** Capture -> bridge -> sinks until SIGINT/SIGTERM; reports its phase and its exporter sinks for readiness. */
async function runPipeline(cfg: TcpspanConfig, exporterSinks: ExporterSink[], setPhase: (p: Phase) => void,
                           healthAddress: string | undefined): Promise<number> {
  const x = cfg.export;
  const { traces: tracesMode, metrics: metricsMode } = resolveExporters(x);
  // before anything else: a spool directory that cannot be used is a setting refused at start
  const spool = openSpool(cfg, tracesMode === 'otlp');
  const telemetry = await createTelemetry({
    serviceName: cfg.service.name,
    ...(metricsMode === 'otlp' && x.metricsEndpoint ? { metricsEndpoint: x.metricsEndpoint } : {}),
    metricIntervalMs: x.metricIntervalMs,
    exportTimeoutMs: x.batch.exportTimeoutMs,
  });
  const queue = x.batch; // export.batch.* are the queue's options, key for key
  const sinks: SpanSink[] = [];
  if (tracesMode === 'otlp') {
    const otlp = createOtlpGrpcSpanExporter({
      url: x.tracesEndpoint, timeoutMillis: x.batch.exportTimeoutMs, maxReconnectBackoffMs: x.batch.retryMaxDelayMs,
    }, telemetry.resource, SCOPE);
    exporterSinks.push(createExporterSink<EncodedSpan>('otlp', otlp.exporter, otlp.encode,
      { ...queue, sizeOf: (s) => s.bytes.length, ...(spool && { spool }) }, say));
  }
  if (x.tracesFile) {
    exporterSinks.push(createExporterSink('file', createTracesFileExporter(x.tracesFile, telemetry.resource, SCOPE), (s) => s, queue, say));
  }
  sinks.push(...exporterSinks);
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
      inspect: { traceparent: cfg.inspect.traceparent, protocols: cfg.inspect.protocols },
      detect: cfg.detect.enabled,
      warn: (m) => say(`warning: ${m}`),
    });
  } catch (err) {
    await Promise.all(sinks.map((s) => s.shutdown(0)));
    await telemetry.shutdown();
    throw err;
  }
  const services = processServices(cfg);
  const clock = createClock();
  const detector = cfg.detect.enabled ? createDetector(cfg.detect, capture.listen, epochOffset(clock.toEpochNs)) : undefined;
  // ratio 1: no sampler, every end becomes a span (and carries no tracestate)
  const sampler = cfg.sampling.ratio < 1 ? createSampler(cfg.sampling) : undefined;
  const bridge = createBridge({
    capture, clock, correlator: { ...cfg.correlator, maxLinksPerSpan: cfg.inspect.maxLinksPerSpan }, sinks, ...(services && { services }),
    ...(cfg.attribution.cgroups && { attributor: createCgroupAttributor() }),
    ...(sampler && { sampler }),
    ...(detector && { detector }),
    onRecord: (r) => telemetry.connections.record(r),
    onCheckpoint: (cp) => telemetry.connections.recordCheckpoint(cp),
  });
  telemetry.connections.observeOpen((visit) => bridge.openEnds(visit), () => Number(process.hrtime.bigint()));
  observeHealth(telemetry.meter, bridge.health);
  if (detector !== undefined) observeDetect(telemetry.meter, detector.sources);
  const stopped = new Promise<void>((resolve) => onShutdownSignal(resolve));
  bridge.start();
  setPhase('running');
  say(`running: ${capture.programs.filter((p) => p.attached).length} programs attached; spans to ${sinks.map((s) => s.name).join(', ') || 'nowhere'}` +
    `${sampler ? ` (sampling: ${cfg.sampling.ratio} of healthy connections, every failure)` : ''}` +
    `${cfg.correlator.checkpointMs > 0 && sinks.some((s) => s.acceptCheckpoint) ? `; checkpoints of open connections every ${cfg.correlator.checkpointMs} ms` : ''}` +
    `${metricsMode === 'otlp' ? `; metrics to ${x.metricsEndpoint}` : ''}${healthAddress ? `; health on http://${healthAddress}` : ''}; SIGINT or SIGTERM to stop`);
  await stopped;
  setPhase('stopping');

  // spans and the final metrics export share one deadline
  const summary = await bridge.stop(x.shutdownTimeoutMs, () => telemetry.shutdown());
  say(shutdownLine(summary, summary.kernelCounters));
  return 0;
}

/** The OTLP span spool (export.spoolDir) when configured, checked and opened; a problem is a ConfigError naming the key. */
function openSpool(cfg: TcpspanConfig, otlp: boolean): SpanSpool<EncodedSpan> | undefined {
  const { spoolDir, spoolMaxBytes } = cfg.export;
  if (!spoolDir) return undefined;
  if (!otlp) {
    say('warning: export.spoolDir is set, but spans are not exported over OTLP: no spool is used');
    return undefined;
  }
  let spool: SpanSpool<EncodedSpan>;
  try {
    spool = openSpanSpool({ dir: spoolDir, maxBytes: spoolMaxBytes, codec: createEncodedSpanCodec() });
  } catch (err) {
    if (err instanceof SpoolError) throw settingError(cfg, 'export.spoolDir', err.message);
    const e = err as NodeJS.ErrnoException;
    throw settingError(cfg, 'export.spoolDir', `cannot use it as the spool (${e.code ?? e.message}); choose another directory`);
  }
  const free = spoolFreeBytes(spool.dir);
  if (free !== undefined && free < segmentBytesFor(spoolMaxBytes)) {
    // a warning, not a refusal: tcpspan still exports without it, and space may come back
    say(`warning: export.spoolDir ${spool.dir}: its filesystem has ${free} bytes free, less than one spool segment; ` +
      'spans stay in memory while exports fail until space is freed');
  }
  return spool;
}

/** The attribution stage, when configured and when /proc names the kernel's pids (else one warning). */
function processServices(cfg: TcpspanConfig): ProcessServices | undefined {
  if (!cfg.attribution.serviceFromProcess) return undefined;
  const problem = hostProcProblem();
  if (problem !== undefined) {
    say(`warning: attribution.serviceFromProcess: ${problem}, so every span keeps service.name ${JSON.stringify(cfg.service.name)}; ` +
      'run tcpspan in the host PID namespace (Kubernetes hostPID: true, compose pid: host), or set TCPSPAN_SERVICE_FROM_PROCESS=false');
    return undefined;
  }
  return createProcessServices({ log: (m) => say(`warning: attribution: ${m}`) });
}

function short(text: string, max = 160): string {
  const line = text.split('\n')[0]!.trim();
  return line.length > max ? `${line.slice(0, max - 3)}...` : line;
}
