// The observability stack (Dockerfile, docker-compose.yml, otel-collector/, grafana/,
// deploy/kubernetes/) agrees with itself and with tcpspan: pipelines reference defined
// components, ports and hosts line up, images are pinned, the dashboard queries only names
// tcpspan's metrics become in Prometheus, and the compose service's exact configuration
// (environment, user, capabilities, PID namespace) really runs tcpspan.
import assert from 'node:assert/strict';
import { METRICS } from '../src/export/metric-names.js';
import { type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import net from 'node:net';
import path from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { spawnUntilReady } from './support/ready-process.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedMetric } from './support/otlp-receiver.js';
import { closedPort, startServer, type TestServer } from './support/tcp.js';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');

// ---------------------------------------------------------------- what tcpspan reads and exports

/** Every environment variable tcpspan reads (README: configuration). */
const TCPSPAN_ENV = [
  'OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT',
  'OTEL_SERVICE_NAME', 'OTEL_RESOURCE_ATTRIBUTES', 'OTEL_TRACES_EXPORTER', 'OTEL_METRICS_EXPORTER',
  'OTEL_BSP_MAX_QUEUE_SIZE', 'OTEL_BSP_MAX_EXPORT_BATCH_SIZE', 'OTEL_BSP_SCHEDULE_DELAY', 'OTEL_BSP_EXPORT_TIMEOUT',
  'OTEL_METRIC_EXPORT_INTERVAL', 'TCPSPAN_PORTS', 'TCPSPAN_ADDRS', 'TCPSPAN_NETNS', 'TCPSPAN_RING_BUFFER_BYTES',
  'TCPSPAN_HEALTH_LISTEN', 'TCPSPAN_SERVICE_FROM_PROCESS',
  'TCPSPAN_HEALTH_LISTEN', 'TCPSPAN_SAMPLING_RATIO', 'TCPSPAN_SAMPLING_KEEP_SLOWER_THAN_MS',
  'TCPSPAN_SPOOL_DIR', 'TCPSPAN_SPOOL_MAX_BYTES',
] as const;

type InstrumentType = 'histogram' | 'counter' | 'updowncounter' | 'gauge';

interface MetricDoc {
  name: string;
  unit: string;
  type: InstrumentType;
  attributes: string[];
}

const KIND_TYPE = ['tcp.connection.kind', 'network.type'];

/** tcpspan's metrics as documented (README: metrics); checked against src/export/bridge-metrics.ts below. */
const TCPSPAN_METRICS: MetricDoc[] = [
  { name: 'tcp.connection.duration', unit: 's', type: 'histogram', attributes: [...KIND_TYPE, 'tcp.close.reason'] },
  { name: 'tcp.connection.handshake.duration', unit: 's', type: 'histogram', attributes: KIND_TYPE },
  { name: 'tcp.connection.rtt', unit: 's', type: 'histogram', attributes: KIND_TYPE },
  { name: 'tcp.connection.retransmits', unit: '{segment}', type: 'counter', attributes: KIND_TYPE },
  { name: 'tcp.connections.closed', unit: '{connection}', type: 'counter', attributes: [...KIND_TYPE, 'tcp.close.reason'] },
  { name: 'tcp.connection.bytes', unit: 'By', type: 'counter', attributes: [...KIND_TYPE, 'network.io.direction'] },
  { name: 'tcp.connection.open.age', unit: 's', type: 'histogram', attributes: KIND_TYPE },
  { name: 'tcp.connections.opened', unit: '{connection}', type: 'counter', attributes: [] },
  { name: 'tcp.connections.active', unit: '{connection}', type: 'updowncounter', attributes: [] },
  { name: 'tcpspan.kernel.events', unit: '{event}', type: 'counter', attributes: [] },
  { name: 'tcpspan.kernel.events.lost', unit: '{event}', type: 'counter', attributes: ['reason'] },
  { name: 'tcpspan.events.dropped', unit: '{event}', type: 'counter', attributes: ['reason'] },
  { name: 'tcpspan.spans.exported', unit: '{span}', type: 'counter', attributes: [] },
  { name: 'tcpspan.spans.dropped', unit: '{span}', type: 'counter', attributes: ['reason'] },
  { name: 'tcpspan.service.lookups.failed', unit: '{lookup}', type: 'counter', attributes: ['reason'] },
  { name: 'tcpspan.connections.close_lost', unit: '{connection}', type: 'counter', attributes: [] },
  { name: 'tcpspan.spans.sampled_out', unit: '{span}', type: 'counter', attributes: [] },
  { name: 'tcpspan.spans.spooled', unit: '{span}', type: 'counter', attributes: [] },
  { name: 'tcpspan.spans.replayed', unit: '{span}', type: 'counter', attributes: [] },
  { name: 'tcpspan.spool.spans', unit: '{span}', type: 'updowncounter', attributes: [] },
  { name: 'tcpspan.spool.usage', unit: 'By', type: 'updowncounter', attributes: [] },
  { name: 'tcp.syn.received', unit: '{syn}', type: 'counter', attributes: ['network.local.port'] },
  { name: 'tcp.syn.half_open', unit: '{connection}', type: 'gauge', attributes: ['network.local.port'] },
  { name: 'tcp.syn.queue_full', unit: '{syn}', type: 'counter', attributes: ['network.local.port'] },
  { name: 'tcp.syn.synack_retransmits', unit: '{segment}', type: 'counter', attributes: ['network.local.port'] },
  { name: 'tcp.syn.refused', unit: '{syn}', type: 'counter', attributes: [] },
  { name: 'tcp.syn.cookies.sent', unit: '{syn}', type: 'counter', attributes: ['tcpspan.netns'] },
  { name: 'tcp.listen.overflows', unit: '{syn}', type: 'counter', attributes: ['tcpspan.netns'] },
  { name: 'tcp.listen.drops', unit: '{syn}', type: 'counter', attributes: ['tcpspan.netns'] },
  { name: 'tcpspan.detections', unit: '{detection}', type: 'counter', attributes: ['tcpspan.detection.kind'] },
  { name: 'tcpspan.detect.peers.evicted', unit: '{peer}', type: 'counter', attributes: [] },
];

/**
 * The fixture: the Prometheus metric families the collector's prometheus exporter exposes for
 * tcpspan (translation_strategy UnderscoreEscapingWithSuffixes, the default), and so the only
 * names grafana/dashboards/tcpspan.json may query. Histograms add _bucket, _sum and _count.
 */
const PROMETHEUS_FAMILIES: Record<string, string> = {
  'tcp.connection.duration': 'tcp_connection_duration_seconds',
  'tcp.connection.handshake.duration': 'tcp_connection_handshake_duration_seconds',
  'tcp.connection.rtt': 'tcp_connection_rtt_seconds',
  'tcp.connection.retransmits': 'tcp_connection_retransmits_total',
  'tcp.connections.closed': 'tcp_connections_closed_total',
  'tcp.connection.bytes': 'tcp_connection_bytes_total',
  'tcp.connection.open.age': 'tcp_connection_open_age_seconds',
  'tcp.connections.opened': 'tcp_connections_opened_total',
  'tcp.connections.active': 'tcp_connections_active',
  'tcpspan.kernel.events': 'tcpspan_kernel_events_total',
  'tcpspan.kernel.events.lost': 'tcpspan_kernel_events_lost_total',
  'tcpspan.events.dropped': 'tcpspan_events_dropped_total',
  'tcpspan.spans.exported': 'tcpspan_spans_exported_total',
  'tcpspan.spans.dropped': 'tcpspan_spans_dropped_total',
  'tcpspan.service.lookups.failed': 'tcpspan_service_lookups_failed_total',
  'tcpspan.connections.close_lost': 'tcpspan_connections_close_lost_total',
  'tcpspan.spans.sampled_out': 'tcpspan_spans_sampled_out_total',
  'tcpspan.spans.spooled': 'tcpspan_spans_spooled_total',
  'tcpspan.spans.replayed': 'tcpspan_spans_replayed_total',
  'tcpspan.spool.spans': 'tcpspan_spool_spans',
  'tcpspan.spool.usage': 'tcpspan_spool_usage_bytes',
  'tcp.syn.received': 'tcp_syn_received_total',
  'tcp.syn.half_open': 'tcp_syn_half_open',
  'tcp.syn.queue_full': 'tcp_syn_queue_full_total',
  'tcp.syn.synack_retransmits': 'tcp_syn_synack_retransmits_total',
  'tcp.syn.refused': 'tcp_syn_refused_total',
  'tcp.syn.cookies.sent': 'tcp_syn_cookies_sent_total',
  'tcp.listen.overflows': 'tcp_listen_overflows_total',
  'tcp.listen.drops': 'tcp_listen_drops_total',
  'tcpspan.detections': 'tcpspan_detections_total',
  'tcpspan.detect.peers.evicted': 'tcpspan_detect_peers_evicted_total',
};

// ---------------------------------------------------------------- OTel -> Prometheus names

// UCUM units to Prometheus words, as the collector's translator (prometheus/otlptranslator) maps them.
const UNIT_WORDS: Record<string, string> = {
  d: 'days', h: 'hours', min: 'minutes', s: 'seconds', ms: 'milliseconds', us: 'microseconds', ns: 'nanoseconds',
  By: 'bytes', KiBy: 'kibibytes', MiBy: 'mebibytes', GiBy: 'gibibytes', KBy: 'kilobytes', MBy: 'megabytes', GBy: 'gigabytes',
  'By/s': 'bytes_per_second', m: 'meters', V: 'volts', A: 'amperes', J: 'joules', W: 'watts', g: 'grams', Cel: 'celsius', Hz: 'hertz',
  '%': 'percent',
};

const tokens = (s: string): string[] => s.split(/[^a-zA-Z0-9]+/).filter(Boolean);

/** A name or attribute as a Prometheus label/metric name: every run of other characters becomes one underscore. */
export function prometheusLabel(attribute: string): string {
  return tokens(attribute).join('_');
}

/**
 * The metric family the prometheus exporter exposes for an OTel instrument, with suffixes:
 * the unit's word (curly-brace annotations are dropped; `1` is `ratio` on gauges only) unless
 * the name already has it, then `_total` for monotonic sums (counters). Up-down counters are
 * non-monotonic sums, exposed as gauges without `_total`.
 */
export function prometheusFamily(m: Pick<MetricDoc, 'name' | 'unit' | 'type'>): string {
  const name = tokens(m.name);
  const unit = m.unit.replace(/\{[^}]*\}/g, '').trim();
  const [main = '', per = ''] = unit.split('/');
  const words: string[] = [];
  if (unit === '1') {
    if (m.type === 'gauge') words.push('ratio');
  } else if (UNIT_WORDS[unit]) {
    words.push(...UNIT_WORDS[unit].split('_'));
  } else {
    if (main) words.push(...tokens(UNIT_WORDS[main] ?? main));
    if (per) words.push('per', ...tokens(UNIT_WORDS[per] ?? per));
  }
  const suffix = words.join('_');
  let out = m.type === 'counter' ? name.filter((t) => t !== 'total') : name;
  if (suffix && !out.join('_').endsWith(suffix)) out = [...out, ...words];
  if (m.type === 'counter') out = [...out, 'total'];
  return out.join('_');
}

/** Every series name a family exposes. */
export function prometheusSeries(m: Pick<MetricDoc, 'name' | 'unit' | 'type'>): string[] {
  const family = prometheusFamily(m);
  return m.type === 'histogram' ? [`${family}_bucket`, `${family}_sum`, `${family}_count`] : [family];
}

// ---------------------------------------------------------------- PromQL

const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on', 'ignoring',
  'group_left', 'group_right', 'inf', 'nan', 'Inf', 'NaN', 'atan2', 'start', 'end']);

/** Metric names a PromQL expression selects (strings, matchers, ranges and grouping lists removed; calls skipped). */
export function promqlMetricNames(expr: string): string[] {
  let s = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '""');
  s = s.replace(/\{[^}]*\}/g, ' ').replace(/\[[^\]]*\]/g, ' ');
  s = s.replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names: string[] = [];
  for (const m of s.matchAll(/(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = s.slice(m.index + m[0].length).trimStart();
    if (rest.startsWith('(') || PROMQL_KEYWORDS.has(m[0])) continue;
    names.push(m[0]);
  }
  return names;
}

/** Label names a PromQL expression matches on or groups by. */
export function promqlLabelNames(expr: string): string[] {
  const s = expr.replace(/"(?:[^"\\]|\\.)*"/g, '""');
  const labels: string[] = [];
  for (const m of s.matchAll(/\{([^}]*)\}/g)) {
    for (const x of m[1]!.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)/g)) labels.push(x[1]!);
  }
  for (const m of s.matchAll(/\b(?:by|without|on|ignoring)\s*\(([^)]*)\)/g)) {
    labels.push(...m[1]!.split(',').map((l) => l.trim()).filter(Boolean));
  }
  return labels;
}

// ---------------------------------------------------------------- files

// Parsed YAML: its shape is checked by the assertions, not by types.
type Yaml = Record<string, any>;

const readYaml = (rel: string): Yaml => parseYaml(readFileSync(path.join(ROOT, rel), 'utf8')) as Yaml;

function readYamlDocs(rel: string): Yaml[] {
  return parseAllDocuments(readFileSync(path.join(ROOT, rel), 'utf8')).map((d) => {
    assert.equal(d.errors.length, 0, `${rel}: ${d.errors.join('; ')}`);
    return d.toJS() as Yaml;
  }).filter((d) => d !== null);
}

const K8S_DIR = 'deploy/kubernetes';
const k8sFiles = (): string[] => readdirSync(path.join(ROOT, K8S_DIR)).filter((f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml');
const k8sObjects = (): Yaml[] => k8sFiles().flatMap((f) => readYamlDocs(`${K8S_DIR}/${f}`));

function k8sObject(kind: string, name: string): Yaml {
  const o = k8sObjects().find((x) => x['kind'] === kind && x['metadata']?.['name'] === name);
  assert.ok(o, `no ${kind} ${name} in ${K8S_DIR}`);
  return o;
}

/** Collector configs: the compose one and every ConfigMap's config.yaml. */
function collectorConfigs(): [string, Yaml][] {
  const out: [string, Yaml][] = [['otel-collector/config.yaml', readYaml('otel-collector/config.yaml')]];
  for (const cm of k8sObjects().filter((o) => o['kind'] === 'ConfigMap' && o['data']?.['config.yaml'])) {
    out.push([`ConfigMap ${cm['metadata']['name']}`, parseYaml(cm['data']['config.yaml'] as string) as Yaml]);
  }
  return out;
}

const compose = (): Yaml => readYaml('docker-compose.yml');

function composeService(predicate: (name: string, s: Yaml) => boolean): [string, Yaml] {
  const found = Object.entries(compose()['services'] as Record<string, Yaml>).find(([n, s]) => predicate(n, s));
  assert.ok(found, 'service not found in docker-compose.yml');
  return found;
}

const collectorService = (): [string, Yaml] => composeService((_n, s) => String(s['image'] ?? '').startsWith('otel/opentelemetry-collector'));

function composeEnv(service: Yaml): Record<string, string> {
  const env = service['environment'] ?? {};
  if (Array.isArray(env)) {
    return Object.fromEntries(env.map((e: string) => { const i = e.indexOf('='); return [e.slice(0, i), e.slice(i + 1)]; }));
  }
  return Object.fromEntries(Object.entries(env as Record<string, unknown>).map(([k, v]) => [k, String(v)]));
}

/** The port of a `host:port` (or `:port`) endpoint. */
const endpointPort = (endpoint: string): number => Number(/:(\d+)$/.exec(endpoint)?.[1] ?? NaN);

/** [repository, tag] of an image reference; the tag is '' when missing. */
function imageTag(image: string): [string, string] {
  const ref = image.split('@')[0]!;
  const slash = ref.lastIndexOf('/');
  const colon = ref.lastIndexOf(':');
  return colon > slash ? [ref.slice(0, colon), ref.slice(colon + 1)] : [ref, ''];
}

/** Every .ts source under src/, for checking that a name is still read somewhere. */
function sourceText(): string {
  const walk = (dir: string): string[] => readdirSync(dir).flatMap((f) => {
    const p = path.join(dir, f);
    return statSync(p).isDirectory() ? walk(p) : p.endsWith('.ts') ? [p] : [];
  });
  return walk(path.join(ROOT, 'src')).map((f) => readFileSync(f, 'utf8')).join('\n');
}

const tcpspanCompose = (): Yaml => compose()['services']['tcpspan'] as Yaml;
const daemonSet = (): Yaml => k8sObject('DaemonSet', 'tcpspan');
const daemonSetContainer = (): Yaml => daemonSet()['spec']['template']['spec']['containers'][0] as Yaml;

// ---------------------------------------------------------------- structure

describe('observability stack', () => {
  describe('collector configs', () => {
    it('should reference only defined receivers, processors, exporters, connectors and extensions, and use each one', () => {
      for (const [where, cfg] of collectorConfigs()) {
        const defined = (section: string): Set<string> => new Set(Object.keys(cfg[section] ?? {}));
        const receivers = defined('receivers'), processors = defined('processors'), exporters = defined('exporters');
        const connectors = defined('connectors'), extensions = defined('extensions');
        const used = new Set<string>();
        const pipelines = Object.entries(cfg['service']?.['pipelines'] ?? {}) as [string, Yaml][];
        assert.ok(pipelines.length > 0, `${where}: no pipelines`);
        for (const [name, p] of pipelines) {
          assert.match(name, /^(traces|metrics|logs)(\/.+)?$/, `${where}: pipeline ${name}`);
          assert.ok((p['receivers'] ?? []).length > 0 && (p['exporters'] ?? []).length > 0, `${where}: pipeline ${name} needs receivers and exporters`);
          for (const r of p['receivers'] ?? []) { assert.ok(receivers.has(r) || connectors.has(r), `${where}: ${name} receiver ${r} undefined`); used.add(`r:${r}`); }
          for (const x of p['processors'] ?? []) { assert.ok(processors.has(x), `${where}: ${name} processor ${x} undefined`); used.add(`p:${x}`); }
          for (const e of p['exporters'] ?? []) { assert.ok(exporters.has(e) || connectors.has(e), `${where}: ${name} exporter ${e} undefined`); used.add(`e:${e}`); }
          if ((p['processors'] ?? []).includes('memory_limiter')) assert.equal(p['processors'][0], 'memory_limiter', `${where}: ${name}: memory_limiter first`);
        }
        for (const x of cfg['service']?.['extensions'] ?? []) assert.ok(extensions.has(x), `${where}: extension ${x} undefined`);
        for (const r of receivers) assert.ok(used.has(`r:${r}`), `${where}: receiver ${r} unused`);
        for (const x of processors) assert.ok(used.has(`p:${x}`), `${where}: processor ${x} unused`);
        for (const e of exporters) assert.ok(used.has(`e:${e}`), `${where}: exporter ${e} unused`);
        for (const c of connectors) assert.ok(used.has(`r:${c}`) && used.has(`e:${c}`), `${where}: connector ${c} must be both exporter and receiver`);
        for (const x of extensions) assert.ok((cfg['service']?.['extensions'] ?? []).includes(x), `${where}: extension ${x} not enabled`);
        assert.ok(extensions.has('health_check'), `${where}: health_check extension`);
      }
    });

    it('should queue and retry on every exporter that can', () => {
      const pushing = /^(otlp|otlp_grpc|otlphttp|otlp_http|loadbalancing|load_balancing)$/;
      for (const [where, cfg] of collectorConfigs()) {
        for (const [id, e] of Object.entries(cfg['exporters'] ?? {}) as [string, Yaml][]) {
          const type = id.split('/')[0]!;
          if (!pushing.test(type)) continue;
          assert.equal(e?.['sending_queue']?.['enabled'], true, `${where}: ${id}.sending_queue`);
          assert.equal(e?.['retry_on_failure']?.['enabled'], true, `${where}: ${id}.retry_on_failure`);
        }
      }
    });

    it('should expose metrics with the names the dashboard derives (explicit translation strategy)', () => {
      for (const [where, cfg] of collectorConfigs()) {
        for (const [id, e] of Object.entries(cfg['exporters'] ?? {}) as [string, Yaml][]) {
          if (id.split('/')[0] !== 'prometheus') continue;
          assert.equal(e['translation_strategy'], 'UnderscoreEscapingWithSuffixes', `${where}: ${id}`);
          assert.equal(e['namespace'], undefined, `${where}: ${id}: a namespace would prefix every name`);
        }
      }
    });
  });

  describe('docker-compose.yml', () => {
    it('should export from tcpspan only to ports the collector listens on, over loopback', () => {
      const [, collector] = collectorService();
      const cfg = readYaml('otel-collector/config.yaml');
      const grpcPort = endpointPort(cfg['receivers']['otlp']['protocols']['grpc']['endpoint']);
      const published = new Map<number, { hostIp: string; target: number }>();
      for (const p of collector['ports'] as string[]) {
        const m = /^(127\.0\.0\.1):(\d+):(\d+)$/.exec(p);
        assert.ok(m, `collector port ${p}: must be 127.0.0.1:HOST:CONTAINER`);
        published.set(Number(m[2]), { hostIp: m[1]!, target: Number(m[3]) });
      }
      const tcpspan = tcpspanCompose();
      assert.equal(tcpspan['network_mode'], 'host');
      const env = composeEnv(tcpspan);
      const endpoints = ['OTEL_EXPORTER_OTLP_ENDPOINT', 'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT']
        .filter((k) => env[k] !== undefined);
      assert.ok(endpoints.includes('OTEL_EXPORTER_OTLP_ENDPOINT'));
      for (const k of endpoints) {
        const url = new URL(env[k]!);
        assert.equal(url.protocol, 'http:', `${k}: plaintext gRPC to the local collector`);
        assert.ok(['127.0.0.1', 'localhost'].includes(url.hostname), `${k}: host network reaches the collector on loopback`);
        const pub = published.get(Number(url.port));
        assert.ok(pub, `${k}: port ${url.port} is not published by the collector`);
        assert.equal(pub.target, grpcPort, `${k}: port ${url.port} is not the collector's OTLP gRPC receiver (tcpspan exports gRPC only)`);
      }
    });

    it('should have Prometheus scrape the host:port the collector\'s prometheus exporter exposes', () => {
      const [collectorName] = collectorService();
      const cfg = readYaml('otel-collector/config.yaml');
      const exporterPort = endpointPort(cfg['exporters']['prometheus']['endpoint']);
      const prom = composeService((_n, s) => String(s['image'] ?? '').startsWith('prom/prometheus'))[1];
      const source = prom['configs'].find((c: Yaml) => c['target'] === '/etc/prometheus/prometheus.yml')['source'] as string;
      assert.ok(String(prom['command']).includes('--config.file=/etc/prometheus/prometheus.yml'));
      const promCfg = parseYaml(compose()['configs'][source]['content'] as string) as Yaml;
      const job = (promCfg['scrape_configs'] as Yaml[]).find((j) =>
        (j['static_configs'] as Yaml[]).some((s) => (s['targets'] as string[]).includes(`${collectorName}:${exporterPort}`)));
      assert.ok(job, `no scrape job targets ${collectorName}:${exporterPort}`);
      assert.equal(job['honor_labels'], true, 'job/instance must come from the metrics (service.name, service.instance.id)');
    });

    it('should pin every image, publish only on 127.0.0.1, and start services only after what they need is healthy', () => {
      const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
      for (const [name, s] of Object.entries(compose()['services'] as Record<string, Yaml>)) {
        assert.ok(s['image'], `${name}: no image`);
        const [repo, tag] = imageTag(s['image']);
        assert.ok(tag && tag !== 'latest' && /\d/.test(tag), `${name}: image ${s['image']} is not pinned to a version`);
        if (repo === 'tcpspan') assert.equal(tag, pkg.version, 'tcpspan image tag = package.json version');
        for (const p of s['ports'] ?? []) {
          const hostIp = typeof p === 'string' ? p.split(':')[0] : p['host_ip'];
          assert.equal(hostIp, '127.0.0.1', `${name}: port ${JSON.stringify(p)} must be bound to 127.0.0.1`);
        }
        for (const [dep, d] of Object.entries(s['depends_on'] ?? {}) as [string, Yaml][]) {
          assert.ok(['service_healthy', 'service_started', 'service_completed_successfully'].includes(d['condition']), `${name} -> ${dep}: condition`);
          if (d['condition'] === 'service_healthy') assert.ok(compose()['services'][dep]['healthcheck'], `${dep} has no healthcheck`);
        }
      }
      assert.ok(!JSON.stringify(compose()).includes(':latest'));
    });

    it('should provision Grafana with the Prometheus service and the dashboard folder it mounts', () => {
      const [promName] = composeService((_n, s) => String(s['image'] ?? '').startsWith('prom/prometheus'));
      const grafana = composeService((_n, s) => String(s['image'] ?? '').startsWith('grafana/grafana'))[1];
      const ds = readYaml('grafana/provisioning/datasources/datasources.yml')['datasources'] as Yaml[];
      const prom = ds.find((d) => d['type'] === 'prometheus');
      assert.ok(prom);
      assert.equal(new URL(prom['url']).host, `${promName}:9090`);
      const providers = readYaml('grafana/provisioning/dashboards/dashboards.yml')['providers'] as Yaml[];
      const mounts = (grafana['volumes'] as string[]).map((v) => v.split(':'));
      for (const p of providers) {
        const mount = mounts.find(([, target]) => target === p['options']['path']);
        assert.ok(mount, `dashboards path ${p['options']['path']} is not mounted`);
        assert.ok(existsSync(path.join(ROOT, mount[0]!, 'tcpspan.json')));
      }
      for (const d of JSON.parse(readFileSync(path.join(ROOT, 'grafana/dashboards/tcpspan.json'), 'utf8')).panels as Yaml[]) {
        if (d['datasource']) assert.ok(ds.some((x) => x['uid'] === d['datasource']['uid']), `panel ${d['title']}: datasource ${d['datasource']['uid']}`);
      }
    });
  });

  describe('Grafana dashboard', () => {
    const dashboard = (): Yaml => JSON.parse(readFileSync(path.join(ROOT, 'grafana/dashboards/tcpspan.json'), 'utf8')) as Yaml;
    const expressions = (): string[] => {
      const d = dashboard();
      const exprs = (d['panels'] as Yaml[]).flatMap((p) => (p['targets'] ?? []).map((t: Yaml) => t['expr'] as string));
      for (const v of d['templating']['list'] as Yaml[]) {
        const q = typeof v['query'] === 'string' ? v['query'] : v['query']?.['query'];
        const m = /^label_values\(\s*([^,]+),/.exec(q ?? '');
        if (v['type'] === 'query' && m) exprs.push(m[1]!);
      }
      return exprs;
    };

    it('should derive the fixture\'s Prometheus names from tcpspan\'s metrics, as declared in the source', () => {
      assert.deepEqual(Object.fromEntries(TCPSPAN_METRICS.map((m) => [m.name, prometheusFamily(m)])), PROMETHEUS_FAMILIES);
      // the documented list is what the code exports: names, instruments, units and attributes (one table, metric-names.ts)
      assert.deepEqual(METRICS.map(({ name, unit, type, attributes }) => ({ name, unit, type, attributes: [...attributes] }))
        .sort((a, b) => a.name.localeCompare(b.name)),
      TCPSPAN_METRICS.map(({ name, unit, type, attributes }) => ({ name, unit, type, attributes })).sort((a, b) => a.name.localeCompare(b.name)));
    });

    it('should be valid JSON whose every query selects only tcpspan\'s Prometheus names and labels', () => {
      const series = new Set(TCPSPAN_METRICS.flatMap(prometheusSeries));
      const labels = new Set(['le', 'job', 'instance', ...TCPSPAN_METRICS.flatMap((m) => m.attributes.map(prometheusLabel))]);
      const exprs = expressions();
      assert.ok(exprs.length >= 10);
      const queried = new Set<string>();
      for (const e of exprs) {
        const names = promqlMetricNames(e);
        assert.ok(names.length > 0, `no metric in ${e}`);
        for (const n of names) { assert.ok(series.has(n), `${n} (in ${e}) is not a Prometheus name of a tcpspan metric`); queried.add(n); }
        for (const l of promqlLabelNames(e)) assert.ok(labels.has(l), `label ${l} (in ${e}) is not one tcpspan's metrics carry`);
      }
      // what the dashboard is for: close reasons, handshake and RTT percentiles, retransmits, losses
      for (const n of ['tcp_connections_closed_total', 'tcp_connection_handshake_duration_seconds_bucket', 'tcp_connection_rtt_seconds_bucket',
        'tcp_connection_retransmits_total', 'tcpspan_kernel_events_lost_total']) assert.ok(queried.has(n), `dashboard does not show ${n}`);
      assert.ok(exprs.some((e) => /histogram_quantile\(0\.99,[^]*tcp_connection_handshake_duration_seconds_bucket/.test(e)));
      assert.ok(exprs.some((e) => /by \(tcp_close_reason\)[^]*tcp_connections_closed_total/.test(e)));
    });

    it('should extract metric names from PromQL', () => {
      assert.deepEqual(promqlMetricNames('histogram_quantile(0.9, sum by (le, kind) (rate(a_bucket{x=~"$v", y!="z"}[$__rate_interval]))) / on (instance) b'),
        ['a_bucket', 'b']);
      assert.deepEqual(promqlLabelNames('sum by (le, kind) (rate(a{x=~"$v", y!="z"}[5m]))'), ['x', 'y', 'le', 'kind']);
      assert.equal(prometheusFamily({ name: 'system.filesystem.usage', unit: 'By', type: 'updowncounter' }), 'system_filesystem_usage_bytes');
      assert.equal(prometheusFamily({ name: 'http.server.request.duration', unit: 's', type: 'histogram' }), 'http_server_request_duration_seconds');
      assert.equal(prometheusFamily({ name: 'requests.total', unit: '{request}', type: 'counter' }), 'requests_total');
      assert.equal(prometheusFamily({ name: 'cpu.utilization', unit: '1', type: 'gauge' }), 'cpu_utilization_ratio');
    });
  });

  describe('deploy/kubernetes', () => {
    it('should list every manifest in kustomization.yaml', () => {
      assert.deepEqual([...readYaml(`${K8S_DIR}/kustomization.yaml`)['resources']].sort(), k8sFiles().sort());
    });

    it('should give the DaemonSet the same capabilities, user, mounts and namespaces as the compose service', () => {
      const c = tcpspanCompose();
      const pod = daemonSet()['spec']['template']['spec'] as Yaml;
      const ctr = daemonSetContainer();
      const sc = { ...pod['securityContext'], ...ctr['securityContext'] };
      assert.deepEqual([...sc['capabilities']['add']].sort(), [...c['cap_add']].sort());
      assert.deepEqual(sc['capabilities']['drop'], c['cap_drop']);
      assert.equal(`${sc['runAsUser']}:${sc['runAsGroup']}`, c['user']);
      assert.equal(sc['readOnlyRootFilesystem'], c['read_only']);
      assert.equal(sc['privileged'] ?? false, c['privileged'] ?? false);
      assert.equal(sc['allowPrivilegeEscalation'], true, 'file capabilities need no_new_privs off');
      assert.equal(pod['hostNetwork'] ?? false, c['network_mode'] === 'host');
      assert.equal(pod['hostPID'] ?? false, c['pid'] === 'host');
      const volumes = new Map((pod['volumes'] as Yaml[]).map((v) => [v['name'], v['hostPath']?.['path']]));
      const k8sMounts = (ctr['volumeMounts'] as Yaml[]).map((m) => `${volumes.get(m['name'])}:${m['mountPath']}:${m['readOnly'] ? 'ro' : 'rw'}`);
      const composeMounts = (c['volumes'] as string[]).map((v) => (v.split(':').length === 2 ? `${v}:rw` : v));
      assert.deepEqual(k8sMounts.sort(), composeMounts.sort());
      // read-only, but for the span spool: a host directory, so spans outlive a restart of the container or pod
      const spoolDir = composeEnv(c)['TCPSPAN_SPOOL_DIR'];
      assert.ok(spoolDir, 'compose sets TCPSPAN_SPOOL_DIR');
      for (const m of composeMounts) {
        if (m.split(':')[1] === spoolDir) assert.match(m, /^\/var\/lib\/tcpspan\/spool:[^:]+:rw$/, `${m}: the spool, writable, on the host`);
        else assert.match(m, /:ro$/, `${m}: read-only`);
      }
      const spoolVolume = (pod['volumes'] as Yaml[]).find((v) => v['hostPath']?.['path'] === '/var/lib/tcpspan/spool');
      assert.equal(spoolVolume?.['hostPath']?.['type'], 'DirectoryOrCreate');
      const [, tag] = imageTag(ctr['image']);
      assert.equal(`tcpspan:${tag}`, c['image']);
    });

    it('should send tcpspan to the router, the routers by trace id to the gateway headless Service', () => {
      const objs = k8sObjects();
      const env = Object.fromEntries((daemonSetContainer()['env'] as Yaml[]).map((e) => [e['name'], e['value']]));
      const url = new URL(env['OTEL_EXPORTER_OTLP_ENDPOINT']);
      assert.equal(daemonSet()['spec']['template']['spec']['dnsPolicy'], 'ClusterFirstWithHostNet', 'hostNetwork pods need it to resolve Services');
      // host -> Service -> Deployment -> its collector config's OTLP gRPC receiver port
      const serviceBehind = (host: string, port: number): { svc: Yaml; cfg: Yaml } => {
        const [svcName, ns] = host.split('.');
        const svc = objs.find((o) => o['kind'] === 'Service' && o['metadata']['name'] === svcName && o['metadata']['namespace'] === ns);
        assert.ok(svc, `no Service for ${host}`);
        const sp = (svc['spec']['ports'] as Yaml[]).find((p) => p['port'] === port);
        assert.ok(sp, `${svcName} has no port ${port}`);
        const dep = objs.find((o) => o['kind'] === 'Deployment' && Object.entries(svc['spec']['selector'] as Record<string, string>)
          .every(([k, v]) => o['spec']['template']['metadata']['labels'][k] === v));
        assert.ok(dep, `${svcName} selects no Deployment`);
        const ctr = dep['spec']['template']['spec']['containers'][0] as Yaml;
        const cport = (ctr['ports'] as Yaml[]).find((p) => p['name'] === sp['targetPort'] || p['containerPort'] === sp['targetPort']);
        assert.ok(cport, `${svcName}: targetPort ${sp['targetPort']} is no container port`);
        const cmName = (dep['spec']['template']['spec']['volumes'] as Yaml[]).find((v) => v['configMap'])?.['configMap']['name'];
        const cfg = parseYaml(k8sObject('ConfigMap', cmName)['data']['config.yaml']) as Yaml;
        assert.equal(endpointPort(cfg['receivers']['otlp']['protocols']['grpc']['endpoint']), cport['containerPort'],
          `${svcName}: the collector does not listen for OTLP gRPC on ${cport['containerPort']}`);
        return { svc, cfg };
      };
      assert.match(url.hostname, /\.svc\.cluster\.local$/);
      const router = serviceBehind(url.hostname, Number(url.port));
      const lbs = Object.entries(router.cfg['exporters']).filter(([id]) => /^(load_balancing|loadbalancing)(\/|$)/.test(id)) as [string, Yaml][];
      assert.ok(lbs.length > 0);
      const traces = router.cfg['service']['pipelines']['traces']['exporters'] as string[];
      for (const [id, lb] of lbs) {
        const dns = lb['resolver']['dns'];
        const gw = serviceBehind(dns['hostname'], Number(dns['port']));
        assert.equal(gw.svc['spec']['clusterIP'], 'None', `${id}: the DNS resolver needs a headless Service (one A record per pod)`);
        if (traces.includes(id)) {
          assert.equal(lb['routing_key'], 'traceID');
          const ts = (Object.values(gw.cfg['processors']) as Yaml[]).find((p) => Array.isArray(p?.['policies']));
          assert.ok(ts?.['policies'].some((p: Yaml) => p['type'] === 'status_code' && p['status_code']['status_codes'].includes('ERROR')),
            'the gateway keeps failed connections (status ERROR) whole');
        }
      }
    });

    it('should probe tcpspan on the address it serves /healthz and /readyz on, as compose does', () => {
      const ctr = daemonSetContainer();
      const env = Object.fromEntries((ctr['env'] as Yaml[]).map((e) => [e['name'], e['value']]));
      const listen = env['TCPSPAN_HEALTH_LISTEN'] as string;
      assert.equal(listen, composeEnv(tcpspanCompose())['TCPSPAN_HEALTH_LISTEN'], 'the same address in both deployments');
      const [host, port] = listen.split(':');
      assert.equal(host, '127.0.0.1', 'loopback: with hostNetwork the kubelet reaches it there');
      assert.equal(daemonSet()['spec']['template']['spec']['hostNetwork'], true);
      for (const [probe, path] of [['livenessProbe', '/healthz'], ['readinessProbe', '/readyz']] as const) {
        assert.deepEqual(ctr[probe]?.['httpGet'], { host, port: Number(port), path }, probe);
      }
      const check = (tcpspanCompose()['healthcheck']['test'] as string[]).join(' ');
      assert.ok(check.includes(`http://${listen}/readyz`), check);
    });

    it('should pin every image and set resources on every container', () => {
      for (const o of k8sObjects().filter((x) => ['DaemonSet', 'Deployment'].includes(x['kind']))) {
        for (const c of o['spec']['template']['spec']['containers'] as Yaml[]) {
          const [, tag] = imageTag(c['image']);
          assert.ok(tag && tag !== 'latest', `${o['metadata']['name']}: ${c['image']}`);
          assert.ok(c['resources']?.['requests'] && c['resources']?.['limits'], `${o['metadata']['name']}: resources`);
        }
      }
      const [, collectorImage] = collectorService();
      for (const o of k8sObjects().filter((x) => x['kind'] === 'Deployment')) {
        assert.equal(o['spec']['template']['spec']['containers'][0]['image'], collectorImage['image'], 'one collector version everywhere');
      }
    });
  });

  describe('tcpspan environment', () => {
    it('should set for tcpspan only variables tcpspan reads, each still read in src/', () => {
      const src = sourceText();
      for (const name of TCPSPAN_ENV) assert.ok(src.includes(name), `${name} is no longer read anywhere in src/`);
      const composeNames = Object.keys(composeEnv(tcpspanCompose()));
      const k8sNames = (daemonSetContainer()['env'] as Yaml[]).map((e) => e['name'] as string);
      for (const [where, names] of [['docker-compose.yml', composeNames], ['DaemonSet', k8sNames]] as const) {
        assert.ok(names.length > 0);
        for (const n of names) assert.ok((TCPSPAN_ENV as readonly string[]).includes(n), `${where}: tcpspan does not read ${n}`);
      }
      assert.deepEqual([...k8sNames].sort(), [...composeNames].sort(), 'the same knobs in both deployments');
    });
  });
});

// ---------------------------------------------------------------- the compose service, for real

function findTool(name: string): string | undefined {
  return ['/usr/bin', '/bin', '/usr/sbin', '/sbin'].map((d) => path.join(d, name)).find((p) => existsSync(p));
}

interface Contained {
  child: ChildProcess;
  stderr(): string;
  /** SIGTERM to tcpspan, then its exit status. */
  stop(): Promise<number>;
}

/**
 * tcpspan as docker-compose.yml runs it: exactly `env`, the compose user, only the compose
 * capabilities (as ambient capabilities, which is what the image's file capabilities give),
 * and the host's PID namespace when the service has `pid: host`, else its own.
 */
async function startAsCompose(env: Record<string, string>): Promise<Contained> {
  const svc = tcpspanCompose();
  const unshare = findTool('unshare'), setpriv = findTool('setpriv');
  assert.ok(unshare && setpriv, 'util-linux unshare and setpriv are needed (scripts/setup installs util-linux)');
  const [uid, gid] = String(svc['user']).split(':');
  const caps = (svc['cap_add'] as string[]).map((c) => `+${c.toLowerCase()}`).join(',');
  const hostPid = svc['pid'] === 'host';
  const asUser = [setpriv, `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups',
    `--inh-caps=-all,${caps}`, `--ambient-caps=-all,${caps}`, `--bounding-set=-all,${caps}`, process.execPath, MAIN, 'run'];
  // setpriv execs tcpspan; unshare forks it as PID 1 of a new namespace
  const [command, ...args] = hostPid ? asUser : [unshare, '--pid', '--fork', '--mount-proc', '--kill-child', ...asUser];
  const p = await spawnUntilReady(command!, args, { ready: 'running:', env, stdout: 'ignore', timeoutMs: 20_000 });
  const child = p.child;
  return {
    child, stderr: p.stderr,
    async stop() {
      if (child.exitCode !== null) return child.exitCode;
      const exited = once(child, 'exit');
      const tcpspanPid = hostPid ? child.pid!
        : Number(readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(/\s+/)[0]);
      process.kill(tcpspanPid, 'SIGTERM');
      const [code] = (await exited) as [number];
      return code;
    },
  };
}

describe('docker-compose tcpspan service', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver | undefined;
  let server: TestServer | undefined;
  let run: Contained | undefined;
  let spoolDir: string | undefined;

  afterEach(async () => {
    if (run && run.child.exitCode === null) await run.stop().catch(() => run?.child.kill('SIGKILL'));
    await server?.close();
    await receiver?.close();
    run = undefined; server = undefined; receiver = undefined;
    if (spoolDir !== undefined) rmSync(spoolDir, { recursive: true, force: true });
    spoolDir = undefined;
  });

  it('should export both ends of a connection with the compose environment, user and capabilities', async function () {
    if (process.getuid?.() !== 0) this.skip(); // loading BPF programs needs root (or the capabilities) to begin with
    const composeEnvironment = composeEnv(tcpspanCompose());
    for (const k of ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', 'OTEL_EXPORTER_OTLP_METRICS_ENDPOINT']) {
      assert.equal(composeEnvironment[k], undefined, `${k} would bypass the test's receiver`);
    }
    receiver = await startOtlpReceiver();
    server = await startServer(4, { reply: 3, closeDelayMs: 1 });
    // the health endpoints on a port free now, not the compose one (which this host may be using)
    const health = `127.0.0.1:${await closedPort(4)}`;
    assert.ok(composeEnvironment['TCPSPAN_HEALTH_LISTEN']);
    // the spool in a directory the compose user owns, as the volume's would be, not this host's /var/lib
    assert.ok(composeEnvironment['TCPSPAN_SPOOL_DIR']);
    const [uid, gid] = String(tcpspanCompose()['user']).split(':').map(Number);
    spoolDir = mkdtempSync(path.join(tmpdir(), 'tcpspan-compose-spool-'));
    chownSync(spoolDir, uid!, gid!);
    run = await startAsCompose({
      ...composeEnvironment, OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, TCPSPAN_PORTS: String(server.port), TCPSPAN_HEALTH_LISTEN: health,
      TCPSPAN_SPOOL_DIR: path.join(spoolDir, 'spool'),
    });
    assert.equal((await fetch(`http://${health}/readyz`)).status, 200);

    const sock = net.connect(server.port, '127.0.0.1');
    await once(sock, 'connect');
    const clientPort = sock.localPort!;
    sock.write('hello');
    await once(sock, 'data');
    sock.end();
    await once(sock, 'close');

    const spans = await receiver.waitForSpans(2, 15_000);
    const resourceAttributes = Object.fromEntries((composeEnvironment['OTEL_RESOURCE_ATTRIBUTES'] ?? '').split(',').filter(Boolean)
      .map((kv) => kv.split('=') as [string, string]));
    assert.equal(await run.stop(), 0, run.stderr());
    assert.equal(receiver.spans().length, 2, 'one span per connection end, nothing else (TCPSPAN_PORTS)');
    // the compose user and capabilities can read this (root's) process's environment: no lookup failed
    assert.match(run.stderr(), /; service lookups failed: none; /);
    const client = spans.find((s) => s.kindName === 'SPAN_KIND_CLIENT');
    const srv = spans.find((s) => s.kindName === 'SPAN_KIND_SERVER');
    assert.ok(client && srv, `kinds: ${spans.map((s) => s.kindName)}`);
    // both ends in one trace; pids in the host's numbering
    assert.deepEqual({
      name: client.name, traceId: srv.traceId, parent: srv.parentSpanId, clientPort: client.attributes['network.local.port'],
      serverPeerPort: srv.attributes['network.peer.port'], pids: [client.attributes['process.pid'], srv.attributes['process.pid']],
      service: client.resource['service.name'],
      resource: Object.fromEntries(Object.keys(resourceAttributes).map((k) => [k, client.resource[k]])),
    }, {
      name: 'tcp.connection', traceId: client.traceId, parent: client.spanId, clientPort,
      serverPeerPort: clientPort, pids: [process.pid, process.pid],
      service: composeEnvironment['OTEL_SERVICE_NAME'], resource: resourceAttributes,
    });

    // the metrics the dashboard is built on arrived (flushed at shutdown), as documented
    const received = new Map<string, ReceivedMetric>(receiver.metrics().map((m) => [m.name, m]));
    for (const n of ['tcp.connections.closed', 'tcp.connection.duration', 'tcp.connection.handshake.duration', 'tcp.connection.rtt', 'tcpspan.kernel.events']) {
      assert.ok(received.has(n), `metric ${n} was not exported; got ${[...received.keys()].join(', ')}`);
    }
    for (const [name, m] of received) {
      const doc = TCPSPAN_METRICS.find((d) => d.name === name);
      assert.ok(doc, `undocumented metric ${name}: the dashboard's name fixture does not know it`);
      const type: InstrumentType = m.type === 'histogram' ? 'histogram' : m.type === 'sum' ? (m.isMonotonic ? 'counter' : 'updowncounter') : 'gauge';
      assert.deepEqual({ name, unit: m.unit, type }, { name, unit: doc.unit, type: doc.type });
      for (const p of m.dataPoints as { attributes: Record<string, unknown> }[]) {
        for (const a of Object.keys(p.attributes)) assert.ok(doc.attributes.includes(a), `${name}: undocumented attribute ${a}`);
      }
    }
  });
});
