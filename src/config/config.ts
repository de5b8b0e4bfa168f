// The one place configuration is resolved: defaults < --config FILE (JSON) < environment < flags.
// Everything else receives a typed, frozen TcpspanConfig; every bad value is a one-line ConfigError.
import { readFileSync } from 'node:fs';
import convict from 'convict';
import { parseCidr } from '../capture/filter.js';
import { DEFAULT_RING_BYTES, MAX_RING_BYTES, MIN_RING_BYTES } from '../capture/ring-size.js';
import { DEFAULT_MAX_SOCKETS } from '../capture/lives-map.js';
import { MAX_CIDRS, MAX_PORTS } from '../decode/wire-layout.js';
import { DECIMAL, flagSettings, flagsForKey, type FlagValues } from './flags.js';

export interface TcpspanConfig {
  // Arrays are frozen at run time too; they are typed mutable so callers can pass them on.
  readonly filter: { readonly ports: number[]; readonly addrs: string[]; readonly netns: number };
  readonly capture: { readonly ringBufferBytes: number; readonly maxSockets: number; readonly synTiming: boolean; readonly cgroupPath: string };
  readonly correlator: {
    readonly maxConnections: number;
    readonly maxEventsPerSpan: number;
    readonly lingerMs: number;
    readonly maxPendingSynAcks: number;
    readonly checkpointMs: number;
  };
  readonly attribution: { readonly cgroups: boolean; readonly serviceFromProcess: boolean };
  readonly sampling: { readonly ratio: number; readonly keepSlowerThanMs: number };
  readonly export: {
    readonly traces: TracesExporter;
    readonly metrics: MetricsExporter;
    readonly otlpEndpoint: string;
    /** after loadConfig: the per-signal endpoint, or otlpEndpoint when none is set */
    readonly tracesEndpoint: string;
    readonly metricsEndpoint: string;
    readonly tracesFile: string;
    readonly batch: {
      readonly maxQueueSize: number;
      readonly maxExportBatchSize: number;
      readonly scheduledDelayMs: number;
      readonly exportTimeoutMs: number;
      readonly maxQueueBytes: number;
      readonly maxRetries: number;
      readonly retryInitialDelayMs: number;
      readonly retryMaxDelayMs: number;
    };
    readonly spoolDir: string;
    readonly spoolMaxBytes: number;
    readonly metricIntervalMs: number;
    readonly shutdownTimeoutMs: number;
  };
  readonly service: { readonly name: string };
  readonly health: { readonly listen: string };
  readonly inspect: { readonly traceparent: boolean; readonly protocols: boolean; readonly maxLinksPerSpan: number };
  readonly detect: {
    readonly enabled: boolean;
    readonly intervalMs: number;
    readonly topPorts: number;
    readonly scan: { readonly ports: number; readonly windowMs: number; readonly maxPeers: number };
    readonly flood: { readonly halfOpen: number; readonly queueFullPerSecond: number; readonly windowMs: number };
  };
}

export type TracesExporter = 'auto' | 'otlp' | 'console' | 'none';
export type MetricsExporter = 'auto' | 'otlp' | 'none';

/** `tcpspan run`'s flags, as parsed: --config names the file, the others set keys (src/config/flags.ts). */
export type ConfigArgv = FlagValues<'run'>;

export interface ConfigDoc {
  key: string;
  default: unknown;
  env?: string;
  /** the flags that set it, e.g. --port */
  flags: string[];
  doc: string;
}

/** A bad setting; the message is one line naming the key, the value, its source and the expected form. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
  constructor(message: string) {
    super(oneLine(message));
  }
}

// ---- formats: each validator throws "expected …"; each coercer parses strings from the environment strictly ----

interface Bounds { min?: number; max?: number }
type Item = convict.SchemaObj & Bounds & { values?: readonly string[] };

const INT = /^[+-]?\d+$/;
const toInt = (s: string): unknown => (INT.test(s.trim()) ? Number(s.trim()) : s);
const toNumber = (s: string): unknown => (DECIMAL.test(s.trim()) ? Number(s.trim()) : s);
const splitList = (s: string): string[] => s.split(',').map((p) => p.trim()).filter((p) => p !== '');

function rangeText({ min, max }: Bounds): string {
  if (min !== undefined && max !== undefined) return `from ${min} to ${max}`;
  if (min !== undefined) return `of at least ${min}`;
  return max !== undefined ? `of at most ${max}` : '';
}

function expect(ok: boolean, form: string): void {
  if (!ok) throw new Error(`expected ${form}`);
}

const FORMATS: Record<string, { validate(v: unknown, item: Item): void; coerce?(s: string): unknown }> = {
  'tcpspan-int': {
    validate: (v, item) => expect(Number.isSafeInteger(v) && (v as number) >= (item.min ?? -Infinity) && (v as number) <= (item.max ?? Infinity),
      `an integer ${rangeText(item)}`.trimEnd()),
    coerce: toInt,
  },
  'tcpspan-power-of-two': {
    validate: (v, item) => expect(Number.isSafeInteger(v) && (v as number) > 0 && ((v as number) & ((v as number) - 1)) === 0 &&
      (v as number) >= (item.min ?? 1) && (v as number) <= (item.max ?? 2 ** 30), `a power of two ${rangeText(item)}`),
    coerce: toInt,
  },
  'tcpspan-ratio': {
    validate: (v) => expect(typeof v === 'number' && v >= 0 && v <= 1, 'a number from 0 to 1, such as 0.1'),
    coerce: toNumber,
  },
  'tcpspan-boolean': {
    validate: (v) => expect(typeof v === 'boolean', 'true or false'),
    coerce: (s) => (/^true$/i.test(s.trim()) ? true : /^false$/i.test(s.trim()) ? false : s),
  },
  'tcpspan-string': {
    validate: (v) => expect(typeof v === 'string', 'a string'),
  },
  'tcpspan-enum': {
    validate: (v, item) => expect(typeof v === 'string' && item.values!.includes(v), `one of ${item.values!.join(', ')}`),
    coerce: (s) => s.trim().toLowerCase(),
  },
  'tcpspan-url': {
    validate: (v) => expect(typeof v === 'string' && (v === '' || isHttpUrl(v)), "an http:// or https:// URL such as http://localhost:4317, or ''"),
    coerce: (s) => s.trim(),
  },
  'tcpspan-listen': {
    validate: (v) => {
      expect(typeof v === 'string', "host:port such as 127.0.0.1:13135 or [::1]:13135, or ''");
      if (v !== '') parseListen(v as string);
    },
    coerce: (s) => s.trim(),
  },
  'tcpspan-ports': {
    validate: (v) => expect(Array.isArray(v) && v.length <= MAX_PORTS && v.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535),
      `a list of up to ${MAX_PORTS} ports, each from 1 to 65535`),
    coerce: (s) => splitList(s).map((p) => (/^\d+$/.test(p) ? Number(p) : p)),
  },
  'tcpspan-cidrs': {
    validate: (v) => {
      const form = `a list of up to ${MAX_CIDRS} addresses or CIDRs such as 10.0.0.0/8 or fd00::/64`;
      expect(Array.isArray(v) && v.length <= MAX_CIDRS && v.every((a) => typeof a === 'string'), form);
      for (const a of v as string[]) {
        try {
          parseCidr(a);
        } catch (err) {
          // the value is shown before this already: a long one is cut here
          const why = (err as Error).message;
          throw new Error(`expected ${form} (${why.length > 160 ? `${why.slice(0, 157)}...` : why})`);
        }
      }
    },
    coerce: splitList,
  },
};
for (const [name, f] of Object.entries(FORMATS)) convict.addFormat({ name, validate: f.validate, ...(f.coerce && { coerce: f.coerce }) });

/** Splits a `host:port` setting (IPv6 in brackets: `[::1]:13135`); throws "expected …" otherwise. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]]+)):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[3]);
  if (!m || !(port >= 1 && port <= 65535)) throw new Error("expected host:port such as 127.0.0.1:13135 or [::1]:13135, or ''");
  return { host: (m[1] ?? m[2])!, port };
}

function isHttpUrl(s: string): boolean {
  try {
    const u = new URL(s);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.hostname !== '';
  } catch {
    return false;
  }
}

// ---- the schema ----

const int = (doc: string, def: number, bounds: Bounds, env?: string) => ({ doc, format: 'tcpspan-int', default: def, ...bounds, ...(env && { env }) });

const SCHEMA: convict.Schema<TcpspanConfig> = {
  filter: {
    ports: {
      doc: 'Only connections with one of these ports at either end (empty: every port). Applied in the kernel.',
      format: 'tcpspan-ports', default: [], env: 'TCPSPAN_PORTS',
    },
    addrs: {
      doc: 'Only connections with an address in one of these IPv4/IPv6 CIDRs at either end (empty: every address). Applied in the kernel.',
      format: 'tcpspan-cidrs', default: [], env: 'TCPSPAN_ADDRS',
    },
    netns: int('Only connections in the network namespace with this inode number (0: every namespace).', 0, { min: 0, max: 2 ** 32 - 1 }, 'TCPSPAN_NETNS'),
  },
  capture: {
    ringBufferBytes: {
      doc: 'Size of the kernel-to-user ring buffer in bytes; when it is full, events are lost (and counted).',
      format: 'tcpspan-power-of-two', default: DEFAULT_RING_BYTES, min: MIN_RING_BYTES, max: MAX_RING_BYTES, env: 'TCPSPAN_RING_BUFFER_BYTES',
    },
    maxSockets: int('Connection ends the kernel tracks at once (a preallocated map, about 320 bytes each); beyond, new ones are not tracked and are counted as sock_map_full.', DEFAULT_MAX_SOCKETS, { min: 64, max: 1 << 24 }, 'TCPSPAN_MAX_SOCKETS'),
    synTiming: { doc: 'Time a server end from the SYN\'s arrival, seen by a sock_ops program on a cgroup v2 hierarchy (needs CAP_NET_ADMIN); false: from when its SYN-ACK was sent (the handshake\'s RTT sample), a few microseconds after the SYN.', format: 'tcpspan-boolean', default: true, env: 'TCPSPAN_SYN_TIMING' },
    cgroupPath: { doc: "cgroup v2 directory the SYN timing program attaches to ('': the mounted cgroup v2 root).", format: 'tcpspan-string', default: '' },
  },
  correlator: {
    maxConnections: int('Open plus lingering connections tracked at most; at the bound the first-closed one is emitted early, or else the oldest open one as incomplete.', 262144, { min: 1 }),
    maxEventsPerSpan: int('Span events kept per connection; the rest are counted as dropped.', 128, { min: 8 }),
    lingerMs: int('How long a closed connection waits for its trailing kernel events before it becomes a span.', 20, { min: 0, max: 10000 }),
    maxPendingSynAcks: int('SYN-ACK retransmit tuples kept while waiting for their server socket.', 4096, { min: 1 }),
    checkpointMs: int('A connection end open longer than this gets a tcp.connection.checkpoint span every this many milliseconds (what it did in the interval, and in all so far), in the trace of its final span, and its bytes count in tcp.connection.bytes without waiting for the close (0: off).',
      60000, { min: 0, max: 86_400_000 }, 'TCPSPAN_CHECKPOINT_MS'),
  },
  attribution: {
    cgroups: {
      doc: 'Put container.id and k8s.pod.uid on each span\'s resource, read from the path of the socket\'s cgroup v2 (Docker, containerd, CRI-O, Podman and kubelet cgroup names), found by walking the cgroup v2 mount (at most once a second, when an unknown cgroup appears).',
      format: 'tcpspan-boolean', default: true, env: 'TCPSPAN_ATTRIBUTION_CGROUPS',
    },
    serviceFromProcess: {
      doc: "Put each span under the service its process names: OTEL_SERVICE_NAME, else service.name in OTEL_RESOURCE_ATTRIBUTES, " +
        "read from /proc/PID/environ (nothing else is kept); spans of other processes keep service.name. Needs the host's PID " +
        "namespace; other users' processes need CAP_DAC_READ_SEARCH.",
      format: 'tcpspan-boolean', default: true, env: 'TCPSPAN_SERVICE_FROM_PROCESS',
    },
  },
  sampling: {
    ratio: {
      doc: 'Share of healthy connections whose spans are kept (1: all, sampling off). Chosen from the trace id ' +
        '(kept when its low 56 bits >= (1 - ratio) * 2^56, as TraceIdRatioBased), so both ends and two hosts agree. ' +
        'Ends with status ERROR, a retransmit or a handshake slower than sampling.keepSlowerThanMs are always kept; metrics count every end.',
      format: 'tcpspan-ratio', default: 1, env: 'TCPSPAN_SAMPLING_RATIO',
    },
    keepSlowerThanMs: int('With sampling: keep every end whose handshake (SYN to ESTABLISHED) took longer than this, whatever the ratio (0: no such rule).',
      200, { min: 0, max: 3_600_000 }, 'TCPSPAN_SAMPLING_KEEP_SLOWER_THAN_MS'),
  },
  export: {
    traces: {
      doc: "Where spans go: otlp, console lines, none, or auto (otlp when an OTLP endpoint is configured, console otherwise). --console forces console.",
      format: 'tcpspan-enum', values: ['auto', 'otlp', 'console', 'none'], default: 'auto', env: 'OTEL_TRACES_EXPORTER',
    },
    metrics: {
      doc: 'Where bridge metrics go: otlp, none, or auto (otlp when an OTLP endpoint is configured, none otherwise).',
      format: 'tcpspan-enum', values: ['auto', 'otlp', 'none'], default: 'auto', env: 'OTEL_METRICS_EXPORTER',
    },
    otlpEndpoint: {
      doc: "OTLP gRPC endpoint for traces and metrics, e.g. http://localhost:4317 ('': none).",
      format: 'tcpspan-url', default: '', env: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    },
    tracesEndpoint: {
      doc: "OTLP gRPC endpoint for traces only ('': otlpEndpoint).",
      format: 'tcpspan-url', default: '', env: 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
    },
    metricsEndpoint: {
      doc: "OTLP gRPC endpoint for metrics only ('': otlpEndpoint).",
      format: 'tcpspan-url', default: '', env: 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
    },
    tracesFile: {
      doc: "Also write spans as OTLP/JSON lines to this file ('-': stdout, '': no file); whole lines only, a failed write's spans counted as dropped; checked at start.",
      format: 'tcpspan-string', default: '',
    },
    batch: {
      maxQueueSize: int('Spans queued per exporter at most; beyond it new spans are dropped (and counted).', 65536, { min: 1 }, 'OTEL_BSP_MAX_QUEUE_SIZE'),
      maxExportBatchSize: int('Spans per export request at most; at most maxQueueSize.', 2048, { min: 1 }, 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE'),
      scheduledDelayMs: int('Milliseconds between two exports of a partial batch.', 200, { min: 0 }, 'OTEL_BSP_SCHEDULE_DELAY'),
      exportTimeoutMs: int('Milliseconds one export request may take.', 10000, { min: 1 }, 'OTEL_BSP_EXPORT_TIMEOUT'),
      maxQueueBytes: int('Bytes of encoded spans queued per OTLP exporter at most (about 0.6 KB a span); beyond it new spans are dropped (and counted).', 64 * 1024 * 1024, { min: 65536 }),
      maxRetries: int('Without a spool: retries of an export that failed with a retryable error before its spans are dropped as export_failed; -1: no limit, retries go on while new spans queue up to maxQueueSize. With export.spoolDir retries never give up.', -1, { min: -1 }),
      retryInitialDelayMs: int('Milliseconds before the first retry of a failed export; the delay doubles with each failed call in a row (±20 % jitter).', 500, { min: 1 }),
      retryMaxDelayMs: int('Milliseconds between two retries at most (the Collector\'s retry_on_failure max_interval).', 30000, { min: 1 }),
    },
    spoolDir: {
      doc: "Directory where OTLP spans wait on disk while exports fail, and at the shutdown deadline; read back first, also after a restart or a SIGKILL ('': no spool). Created when missing; one tcpspan per directory.",
      format: 'tcpspan-string', default: '', env: 'TCPSPAN_SPOOL_DIR',
    },
    spoolMaxBytes: int('Bytes the spool\'s files take at most; when full, its oldest spans are dropped (spool_full).', 256 * 1024 * 1024, { min: 1024 * 1024 }, 'TCPSPAN_SPOOL_MAX_BYTES'),
    metricIntervalMs: int('Milliseconds between two metric exports.', 60000, { min: 100 }, 'OTEL_METRIC_EXPORT_INTERVAL'),
    shutdownTimeoutMs: int('Milliseconds from SIGTERM to exit at most: spans and the final metrics export share them; what is not sent by then goes to the spool, or without one is counted (shutdown_deadline), what was sent but not answered is counted apart (shutdown_unconfirmed).', 5000, { min: 0 }),
  },
  service: {
    name: {
      doc: 'service.name of the resource (other resource attributes come from OTEL_RESOURCE_ATTRIBUTES).',
      format: 'tcpspan-string', default: 'tcpspan', env: 'OTEL_SERVICE_NAME',
    },
  },
  health: {
    listen: {
      doc: "host:port where `tcpspan run` serves /healthz (alive) and /readyz (attached and exporting), e.g. 127.0.0.1:13135 ('': off). Any host is accepted; keep it on loopback unless probes come from elsewhere.",
      format: 'tcpspan-listen', default: '', env: 'TCPSPAN_HEALTH_LISTEN',
    },
  },
  inspect: {
    traceparent: {
      doc: 'Read the W3C traceparent header of each plaintext HTTP/1.x request sent or received and link the connection span to that span (cgroup_skb programs read the head of request segments; off: no program reads payload).',
      format: 'tcpspan-boolean', default: false, env: 'TCPSPAN_INSPECT_TRACEPARENT',
    },
    protocols: {
      doc: 'Identify the protocol from the first bytes of each direction (HTTP/1.x, HTTP/2, TLS ClientHello with SNI, PostgreSQL, MySQL, Redis) as span attributes (cgroup_skb programs read the first payload segment each way; off: no program reads payload).',
      format: 'tcpspan-boolean', default: false, env: 'TCPSPAN_INSPECT_PROTOCOLS',
    },
    maxLinksPerSpan: int('Span links kept per connection end (inspect.traceparent); the rest are counted in the span\'s dropped-links count.', 32, { min: 0, max: 4096 }),
  },
  detect: {
    enabled: {
      doc: 'SYN accounting (SYNs, half-open connections, SYN-ACK retransmits per listening port; refused SYNs; SYN cookie and listen-queue counters per network namespace), SYN flood and port scan detection. A cgroup_skb ingress program (needs a cgroup v2 hierarchy and CAP_NET_ADMIN) sees each segment a local socket receives and counts the SYNs that reach listeners in a map; false: it is not loaded.',
      format: 'tcpspan-boolean', default: true, env: 'TCPSPAN_DETECT',
    },
    intervalMs: int('Milliseconds between two reads of the kernel\'s SYN counts (and of each namespace\'s /proc/PID/net/netstat): the flood detector\'s step.', 1000, { min: 100, max: 60000 }),
    topPorts: int('Listening ports with SYN metrics of their own (the busiest, a slot given up after 10 minutes without a SYN); the rest are counted as network.local.port=other.', 10, { min: 0, max: 1000 }, 'TCPSPAN_DETECT_TOP_PORTS'),
    scan: {
      ports: int('A peer address whose SYNs are refused by, or never complete a handshake with, more than this many distinct local ports within detect.scan.windowMs is a port scan (one tcp.port_scan span per peer and window).', 20, { min: 1, max: 65535 }, 'TCPSPAN_SCAN_PORTS'),
      windowMs: int('The port scan window, from a peer\'s first refused or unanswered handshake; its span is sent when the window closes.', 10000, { min: 100, max: 3600000 }, 'TCPSPAN_SCAN_WINDOW_MS'),
      maxPeers: int('Peer addresses the scan detector tracks at once (about 200 bytes each, 8 KiB past 64 ports); at the bound the oldest window is evicted (counted in tcpspan.detect.peers.evicted).', 4096, { min: 16, max: 1 << 20 }),
    },
    flood: {
      halfOpen: int('A listener with at least this many half-open connections (SYN_RECV) in an interval is under SYN pressure.', 256, { min: 1 }, 'TCPSPAN_FLOOD_HALF_OPEN'),
      queueFullPerSecond: int('A listener receiving at least this many SYNs per second that find its SYN queue full (answered with a SYN cookie, or dropped) is under SYN pressure.', 50, { min: 1 }, 'TCPSPAN_FLOOD_QUEUE_FULL_PER_SECOND'),
      windowMs: int('SYN pressure on a listener for this long without a break is a SYN flood, which ends after as long without pressure (one tcp.syn_flood span per episode).', 5000, { min: 100, max: 3600000 }, 'TCPSPAN_FLOOD_WINDOW_MS'),
    },
  },
};

// The standard OTEL_*_EXPORTER variables name fewer choices than the keys take (no 'auto'),
// and some choices tcpspan does not implement: those are refused naming the variable.
const ENV_CHOICES: Record<string, { accepts: readonly string[]; unsupported: readonly string[] }> = {
  OTEL_TRACES_EXPORTER: { accepts: ['otlp', 'console', 'none'], unsupported: ['zipkin', 'jaeger'] },
  OTEL_METRICS_EXPORTER: { accepts: ['otlp', 'none'], unsupported: ['console', 'prometheus'] },
};

interface Leaf { key: string; item: Item }

function leaves(node: object = SCHEMA, prefix = ''): Leaf[] {
  return Object.entries(node).flatMap(([k, v]): Leaf[] => {
    const key = prefix + k;
    return 'default' in v ? [{ key, item: v as Item }] : leaves(v as object, `${key}.`);
  });
}

const LEAVES = leaves();

/** Every key with its default, environment variable, flags and doc: the source of the README's configuration table. */
export function configDocs(): ConfigDoc[] {
  return LEAVES.map(({ key, item }) => ({
    key, default: structuredClone(item.default), ...(item.env && { env: item.env }), flags: flagsForKey(key), doc: item.doc ?? '',
  }));
}

/** Which exporters 'auto' stands for: otlp when an endpoint is configured, else console (traces) or none (metrics). */
export function resolveExporters(x: TcpspanConfig['export']): { traces: 'otlp' | 'console' | 'none'; metrics: 'otlp' | 'none' } {
  return {
    traces: x.traces === 'auto' ? (x.tracesEndpoint ? 'otlp' : 'console') : x.traces,
    metrics: x.metrics === 'auto' ? (x.metricsEndpoint ? 'otlp' : 'none') : x.metrics,
  };
}

/** Where each loaded configuration's keys came from, for errors found after loading. */
const SOURCES = new WeakMap<TcpspanConfig, (key: string) => string>();

/**
 * A ConfigError for a key of a loaded configuration, in loadConfig's form and naming where the
 * value came from: for checks that need the machine (a path, a port), made before anything starts.
 */
export function settingError(cfg: TcpspanConfig, key: string, problem: string): ConfigError {
  const source = SOURCES.get(cfg)?.(key) ?? 'default';
  return new ConfigError(`config: ${key} = ${show(lookup(cfg, key))} (from ${source}): ${problem}`);
}

export function loadConfig(argv: ConfigArgv, env: NodeJS.ProcessEnv = process.env): TcpspanConfig {
  const fileSource = `--config ${argv.config}`;
  const file = argv.config === undefined ? {} : readConfigFile(argv.config);
  const cleanEnv = checkEnv(env);
  const flags = flagSettings(argv);

  const sourceOf = (key: string): string => {
    const item = LEAVES.find((l) => l.key === key)?.item;
    if (flags.has(key)) return flags.get(key)!.flag;
    if (item?.env && cleanEnv[item.env] !== undefined) return item.env;
    return has(file, key) ? fileSource : 'default';
  };
  const fail = (key: string, value: unknown, problem: string): never => {
    throw new ConfigError(`config: ${key} = ${show(value)} (from ${sourceOf(key)}): ${problem}`);
  };

  // the file's shape is the file's fault, whatever else sets the key
  checkShape(file, SCHEMA, '', (key, value, problem) => {
    throw new ConfigError(`config: ${key} = ${show(value)} (from ${fileSource}): ${problem}`);
  });
  // args: [] so convict never reads process.argv; env: the checked environment, imported with our coercers
  const conf = convict(SCHEMA, { env: cleanEnv, args: [] });
  conf.load(file); // convict re-imports the environment over the file
  for (const [key, { value }] of flags) conf.set(key, value);
  // each key by its own format, in schema order: the first bad one is named with its own value
  // (parsing convict's report instead breaks on values that hold line breaks)
  for (const { key, item } of LEAVES) {
    const value: unknown = conf.get(key as never);
    try {
      FORMATS[item.format as string]!.validate(value, item);
    } catch (err) {
      fail(key, value, (err as Error).message);
    }
  }
  try {
    conf.validate({ allowed: 'strict' });
  } catch (err) {
    explain((err as Error).message, conf, fail);
  }

  const cfg = conf.getProperties() as TcpspanConfig;
  const x = cfg.export as { -readonly [K in keyof TcpspanConfig['export']]: TcpspanConfig['export'][K] };
  x.tracesEndpoint ||= x.otlpEndpoint;
  x.metricsEndpoint ||= x.otlpEndpoint;

  // cross-field checks
  if (x.batch.maxExportBatchSize > x.batch.maxQueueSize) {
    fail('export.batch.maxExportBatchSize', x.batch.maxExportBatchSize,
      `expected at most export.batch.maxQueueSize (${x.batch.maxQueueSize}, from ${sourceOf('export.batch.maxQueueSize')})`);
  }
  const needs = 'expected an OTLP endpoint as well: set OTEL_EXPORTER_OTLP_ENDPOINT or --otlp-endpoint';
  if (x.traces === 'otlp' && !x.tracesEndpoint) fail('export.traces', x.traces, needs);
  if (x.metrics === 'otlp' && !x.metricsEndpoint) fail('export.metrics', x.metrics, needs);
  const frozen = deepFreeze(cfg);
  SOURCES.set(frozen, sourceOf);
  return frozen;
}

function readConfigFile(path: string): object {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why = e.message.replace(/, \w+ '.*'$/, ''); // "ENOENT: no such file or directory"
    throw new ConfigError(`config: cannot read --config ${path}: ${why}: expected a readable JSON file of settings such as config/default.json`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`config: cannot parse --config ${path}: ${(err as Error).message}: expected JSON settings such as config/default.json`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config: --config ${path} holds ${show(parsed)}: expected a JSON object of settings such as config/default.json`);
  }
  return parsed;
}

/** Drops empty variables (unset, as OpenTelemetry treats them) and refuses exporter names the keys cannot express. */
function checkEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  for (const { key, item } of LEAVES) {
    const raw = item.env ? env[item.env] : undefined;
    if (!item.env || raw === undefined || raw.trim() === '') continue;
    const choice = ENV_CHOICES[item.env];
    const v = raw.trim().toLowerCase();
    if (choice && !choice.accepts.includes(v)) {
      const why = choice.unsupported.includes(v) ? `'${v}' is not supported by tcpspan; expected` : 'expected';
      throw new ConfigError(`config: ${key} = ${show(raw)} (from ${item.env}): ${why} one of ${choice.accepts.join(', ')}`);
    }
    out[item.env] = raw;
  }
  return out;
}

/**
 * Refuses a file that puts a value where the schema has a group, or an object where it has a value:
 * convict would silently drop the group's keys (or fail inside its merge) instead.
 */
function checkShape(obj: object, schema: object, prefix: string, fail: (k: string, v: unknown, p: string) => never): void {
  for (const [k, v] of Object.entries(obj)) {
    const key = prefix + k;
    // refused here, not left to convict: it reads 'a.b' as a path and 'toString' off the prototype
    const isObject = typeof v === 'object' && v !== null && !Array.isArray(v);
    if (!Object.hasOwn(schema, k) || k.includes('.')) {
      // an unknown group is named by its first key, as it would be written: exporter.traces
      if (isObject && Object.keys(v).length > 0) checkShape(v, {}, `${key}.`, fail);
      fail(key, v, 'unknown key; expected only the keys of config/default.json');
    }
    const node = (schema as Record<string, object>)[k]!;
    const isGroup = !('default' in node);
    if (isGroup && !isObject) fail(key, v, `expected an object with keys ${Object.keys(node).join(', ')}`);
    if (isGroup) checkShape(v as object, node, `${key}.`, fail);
    else if (isObject) {
      try {
        FORMATS[(node as Item).format as string]!.validate(v, node as Item);
      } catch (err) {
        fail(key, v, (err as Error).message);
      }
    }
  }
}

/** Turns the first line of convict's validation report into a ConfigError. */
function explain(report: string, conf: convict.Config<TcpspanConfig>, fail: (k: string, v: unknown, p: string) => never): never {
  const line = report.split('\n')[0] ?? report;
  // only the file can hold keys the schema lacks, so fail() names it as their source
  const undeclared = /^configuration param '(.+)' not declared in the schema/.exec(line);
  if (undeclared) fail(undeclared[1]!, lookup(conf.getProperties(), undeclared[1]!), 'unknown key; expected only the keys of config/default.json');
  const bad = /^([\w.]+): (.*?)(?:: value was .*)?$/.exec(line);
  if (bad && LEAVES.some((l) => l.key === bad[1])) fail(bad[1]!, conf.get(bad[1] as never), bad[2]!);
  throw new ConfigError(`config: ${line}`);
}

function lookup(obj: object, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown> | undefined)?.[k], obj);
}

function has(obj: object, key: string): boolean {
  let o: unknown = obj;
  for (const part of key.split('.')) {
    if (typeof o !== 'object' || o === null || !Object.hasOwn(o, part)) return false;
    o = (o as Record<string, unknown>)[part];
  }
  return true;
}

function show(v: unknown): string {
  const s = typeof v === 'number' ? String(v) : JSON.stringify(v) ?? String(v);
  return s.length > 120 ? `${s.slice(0, 117)}...` : s;
}

/** Line breaks of any kind (a value may hold \r or U+2028) become one space. */
function oneLine(s: string): string {
  return s.replace(/\s*[\r\n\u2028\u2029]+\s*/g, ' ');
}

function deepFreeze<T>(o: T): T {
  if (typeof o === 'object' && o !== null) {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
