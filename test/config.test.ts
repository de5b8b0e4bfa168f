import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, configDocs, loadConfig, resolveExporters, type ConfigArgv, type TcpspanConfig } from '../src/config/config.js';
import { flagsForKey } from '../src/config/flags.js';

const DEFAULT_JSON = path.resolve(__dirname, '..', '..', 'config', 'default.json');
const DEFAULTS = JSON.parse(readFileSync(DEFAULT_JSON, 'utf8')) as TcpspanConfig;

/** A nested object with one key set, as a config file would hold it. */
function nest(key: string, value: unknown): object {
  return key.split('.').reduceRight<unknown>((v, k) => ({ [k]: v }), value) as object;
}

/** DEFAULTS with some dotted keys replaced. */
function withDefaults(over: Record<string, unknown>): TcpspanConfig {
  const out = structuredClone(DEFAULTS) as unknown as Record<string, Record<string, unknown>>;
  for (const [key, v] of Object.entries(over)) {
    const parts = key.split('.');
    const parent = parts.slice(0, -1).reduce<Record<string, unknown>>((o, k) => o[k] as Record<string, unknown>, out);
    parent[parts.at(-1)!] = v;
  }
  return out as unknown as TcpspanConfig;
}

const label = (v: unknown): string => (Array.isArray(v) && v.length > 4 ? `[${v.length} items]` : JSON.stringify(v));

function flatten(o: object, prefix = ''): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? Object.entries(flatten(v, `${prefix}${k}.`)) : [[`${prefix}${k}`, v]]));
}

describe('loadConfig', () => {
  let dir: string;
  let n = 0;
  const writeConfig = (content: unknown): string => {
    const file = path.join(dir, `c${n++}.json`);
    writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
    return file;
  };

  before(() => { dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-config-')); });
  after(() => { rmSync(dir, { recursive: true, force: true }); });

  describe('defaults', () => {
    it('should give every default with no file, environment or flags', () => {
      assert.deepEqual(loadConfig({}, {}), DEFAULTS);
    });

    it('should ignore environment variables it does not know, and empty ones', () => {
      assert.deepEqual(loadConfig({}, { PATH: '/bin', OTEL_RESOURCE_ATTRIBUTES: 'a=b', TCPSPAN_PORTS: '', OTEL_TRACES_EXPORTER: ' ' }), DEFAULTS);
    });

    it('should return a frozen object, arrays included', () => {
      const cfg = loadConfig({ port: ['80'] }, {});
      assert.ok(Object.isFrozen(cfg) && Object.isFrozen(cfg.export.batch) && Object.isFrozen(cfg.filter.ports));
      assert.throws(() => { cfg.filter.ports.push(1); }, TypeError);
    });
  });

  describe('precedence', () => {
    it('should take the file over defaults, the environment over the file and flags over the environment', () => {
      const file = writeConfig({
        filter: { ports: [1], addrs: ['10.0.0.0/8'] },
        capture: { ringBufferBytes: 8192, synTiming: false },
        correlator: { lingerMs: 30 },
        export: { otlpEndpoint: 'http://file:4317', batch: { maxRetries: 2 } },
        service: { name: 'from-file' },
      });
      const env = {
        TCPSPAN_PORTS: '2, 3', TCPSPAN_RING_BUFFER_BYTES: '16384', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://env:4317',
        OTEL_SERVICE_NAME: 'from-env', OTEL_BSP_SCHEDULE_DELAY: '50',
      };
      const argv: ConfigArgv = { config: file, port: ['4', '5'], 'traces-file': '-' };
      assert.deepEqual(loadConfig(argv, env), withDefaults({
        'filter.ports': [4, 5], 'filter.addrs': ['10.0.0.0/8'],
        'capture.ringBufferBytes': 16384, 'capture.synTiming': false, 'correlator.lingerMs': 30,
        'export.otlpEndpoint': 'http://env:4317', 'export.tracesEndpoint': 'http://env:4317', 'export.metricsEndpoint': 'http://env:4317',
        'export.tracesFile': '-', 'export.batch.maxRetries': 2, 'export.batch.scheduledDelayMs': 50, 'service.name': 'from-env',
      }));
    });

    it('should let a flag endpoint win over every endpoint variable', () => {
      const env = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://a:4317', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://t:4317' };
      const x = loadConfig({ 'otlp-endpoint': 'https://flag:4317' }, env).export;
      assert.deepEqual([x.otlpEndpoint, x.tracesEndpoint, x.metricsEndpoint], ['https://flag:4317', 'https://flag:4317', 'https://flag:4317']);
    });

    it('should take sampling.ratio from TCPSPAN_SAMPLING_RATIO, and --sampling-ratio over it', () => {
      assert.deepEqual(loadConfig({}, { TCPSPAN_SAMPLING_RATIO: ' 0.25 ', TCPSPAN_SAMPLING_KEEP_SLOWER_THAN_MS: '0' }).sampling, { ratio: 0.25, keepSlowerThanMs: 0 });
      assert.equal(loadConfig({ 'sampling-ratio': '1e-3' }, { TCPSPAN_SAMPLING_RATIO: '0.25' }).sampling.ratio, 0.001);
      assert.equal(loadConfig({ 'sampling-ratio': '0' }, {}).sampling.ratio, 0);
    });

    it('should take health.listen from TCPSPAN_HEALTH_LISTEN, IPv6 in brackets', () => {
      assert.equal(loadConfig({}, { TCPSPAN_HEALTH_LISTEN: ' 127.0.0.1:13135 ' }).health.listen, '127.0.0.1:13135');
      assert.equal(loadConfig({}, { TCPSPAN_HEALTH_LISTEN: '[::1]:13135' }).health.listen, '[::1]:13135');
      assert.equal(loadConfig({}, {}).health.listen, '');
    });

    it('should accept config/default.json itself as --config', () => {
      assert.deepEqual(loadConfig({ config: DEFAULT_JSON }, {}), DEFAULTS);
    });

    it('should judge only the value that wins, and name its source', () => {
      const file = writeConfig({ capture: { ringBufferBytes: 1000 }, filter: { ports: [80] } });
      assert.equal(loadConfig({ config: file }, { TCPSPAN_RING_BUFFER_BYTES: '4096' }).capture.ringBufferBytes, 4096);
      assert.deepEqual(loadConfig({ config: file, port: ['443'] }, { TCPSPAN_RING_BUFFER_BYTES: '4096', TCPSPAN_PORTS: '0' }).filter.ports, [443]);
      assert.throws(() => loadConfig({ config: file }, { TCPSPAN_RING_BUFFER_BYTES: '4096', TCPSPAN_PORTS: '0' }),
        { name: 'ConfigError', message: 'config: filter.ports = [0] (from TCPSPAN_PORTS): expected a list of up to 16 ports, each from 1 to 65535' });
    });
  });

  describe('bad values', () => {
    type Source = 'file' | `env ${string}` | 'flag';
    const PORTS = /expected a list of up to 16 ports, each from 1 to 65535$/;
    const CIDRS = /expected a list of up to 16 addresses or CIDRs such as 10\.0\.0\.0\/8 or fd00::\/64/;
    const URL_FORM = /expected an http:\/\/ or https:\/\/ URL such as http:\/\/localhost:4317, or ''$/;
    const LISTEN = /expected host:port such as 127\.0\.0\.1:13135 or \[::1\]:13135, or ''$/;
    const RATIO = /expected a number from 0 to 1, such as 0\.1$/;
    const seventeen = Array.from({ length: 17 }, (_, i) => i + 1);
    // key, bad value, where it comes from, what the line must say after "(from …): "
    const CASES: [string, unknown, Source, RegExp][] = [
      ['filter.ports', [0], 'file', PORTS],
      ['filter.ports', seventeen, 'file', PORTS],
      ['filter.ports', '80,http', 'env TCPSPAN_PORTS', PORTS],
      ['filter.ports', ['65536'], 'flag', PORTS],
      ['filter.addrs', ['10.0.0.0/33'], 'file', /expected .* CIDRs .* \(invalid address range '10\.0\.0\.0\/33': the prefix length must be 0 to 32\)$/],
      ['filter.addrs', seventeen.map((i) => `10.0.0.${i}`), 'file', CIDRS],
      ['filter.addrs', 'example.com', 'env TCPSPAN_ADDRS', /\(invalid address range 'example\.com': expected an address or CIDR/],
      ['filter.addrs', ['1.2.3.4/8/9'], 'flag', CIDRS],
      ['filter.netns', '-1', 'env TCPSPAN_NETNS', /expected an integer from 0 to 4294967295$/],
      ['filter.netns', 1.5, 'file', /expected an integer from 0 to 4294967295$/],
      ['capture.ringBufferBytes', 1000, 'file', /expected a power of two from 4096 to 1073741824$/],
      ['capture.ringBufferBytes', 6000, 'file', /expected a power of two from 4096 to 1073741824$/],
      ['capture.ringBufferBytes', 2 ** 31, 'file', /expected a power of two from 4096 to 1073741824$/],
      ['capture.ringBufferBytes', '12abc', 'env TCPSPAN_RING_BUFFER_BYTES', /expected a power of two from 4096 to 1073741824$/],
      ['capture.synTiming', 'yes', 'file', /expected true or false$/],
      ['capture.synTiming', 1, 'file', /expected true or false$/],
      ['capture.cgroupPath', 5, 'file', /expected a string$/],
      ['correlator.maxConnections', 0, 'file', /expected an integer of at least 1$/],
      ['correlator.maxEventsPerSpan', 7, 'file', /expected an integer of at least 8$/],
      ['correlator.lingerMs', 10001, 'file', /expected an integer from 0 to 10000$/],
      ['correlator.lingerMs', -1, 'file', /expected an integer from 0 to 10000$/],
      ['correlator.maxPendingSynAcks', '4k', 'file', /expected an integer of at least 1$/],
      ['sampling.ratio', 1.5, 'file', RATIO],
      ['sampling.ratio', true, 'file', RATIO],
      ['sampling.ratio', '10%', 'env TCPSPAN_SAMPLING_RATIO', RATIO],
      ['sampling.ratio', 'NaN', 'env TCPSPAN_SAMPLING_RATIO', RATIO],
      ['sampling.ratio', '-0.1', 'flag', RATIO],
      ['sampling.ratio', '1/10', 'flag', RATIO],
      ['sampling.keepSlowerThanMs', -1, 'file', /expected an integer from 0 to 3600000$/],
      ['sampling.keepSlowerThanMs', '0.5', 'env TCPSPAN_SAMPLING_KEEP_SLOWER_THAN_MS', /expected an integer from 0 to 3600000$/],
      ['export.traces', 'jaeger', 'file', /expected one of auto, otlp, console, none$/],
      ['export.traces', 'zipkin', 'env OTEL_TRACES_EXPORTER', /'zipkin' is not supported by tcpspan; expected one of otlp, console, none$/],
      ['export.traces', 'auto', 'env OTEL_TRACES_EXPORTER', /: expected one of otlp, console, none$/],
      ['export.metrics', 'console', 'env OTEL_METRICS_EXPORTER', /'console' is not supported by tcpspan; expected one of otlp, none$/],
      ['export.metrics', 'prometheus', 'env OTEL_METRICS_EXPORTER', /'prometheus' is not supported by tcpspan; expected one of otlp, none$/],
      ['export.metrics', 'console', 'file', /expected one of auto, otlp, none$/],
      ['export.otlpEndpoint', 'localhost:4317', 'flag', URL_FORM],
      ['export.otlpEndpoint', 'grpc://collector:4317', 'env OTEL_EXPORTER_OTLP_ENDPOINT', URL_FORM],
      ['export.tracesEndpoint', 'not a url', 'env OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', URL_FORM],
      ['export.metricsEndpoint', 'ftp://x', 'file', URL_FORM],
      ['export.tracesFile', 7, 'file', /expected a string$/],
      ['export.batch.maxQueueSize', '0', 'env OTEL_BSP_MAX_QUEUE_SIZE', /expected an integer of at least 1$/],
      ['export.batch.maxExportBatchSize', '0', 'env OTEL_BSP_MAX_EXPORT_BATCH_SIZE', /expected an integer of at least 1$/],
      ['export.batch.maxExportBatchSize', 100000, 'file', /expected at most export\.batch\.maxQueueSize \(65536, from default\)$/],
      ['export.batch.scheduledDelayMs', '-5', 'env OTEL_BSP_SCHEDULE_DELAY', /expected an integer of at least 0$/],
      ['export.batch.exportTimeoutMs', '1.5', 'env OTEL_BSP_EXPORT_TIMEOUT', /expected an integer of at least 1$/],
      ['export.batch.maxRetries', -2, 'file', /expected an integer of at least -1$/],
      ['export.batch.retryInitialDelayMs', 0, 'file', /expected an integer of at least 1$/],
      ['export.metricIntervalMs', '99', 'env OTEL_METRIC_EXPORT_INTERVAL', /expected an integer of at least 100$/],
      ['export.shutdownTimeoutMs', null, 'file', /expected an integer of at least 0$/],
      ['service.name', 42, 'file', /expected a string$/],
      ['health.listen', 'localhost', 'env TCPSPAN_HEALTH_LISTEN', LISTEN],
      ['health.listen', '127.0.0.1:0', 'file', LISTEN],
      ['health.listen', '127.0.0.1:65536', 'env TCPSPAN_HEALTH_LISTEN', LISTEN],
      ['health.listen', '::1:13135', 'file', LISTEN],
      ['health.listen', 13135, 'file', LISTEN],
    ];

    for (const [key, value, source, expected] of CASES) {
      it(`should refuse ${key} = ${label(value)} from ${source} in one line`, () => {
        let from: string;
        let load: () => unknown;
        if (source === 'file') {
          const file = writeConfig(nest(key, value));
          from = `--config ${file}`;
          load = () => loadConfig({ config: file }, {});
        } else if (source === 'flag') {
          from = flagsForKey(key)[0]!; // the flag that sets the key, from the flag table
          load = () => loadConfig({ [from.slice('--'.length)]: value } as ConfigArgv, {});
        } else {
          from = source.slice('env '.length);
          load = () => loadConfig({}, { [from]: value as string });
        }
        assert.throws(load, (err: Error) => {
          assert.ok(err instanceof ConfigError, String(err));
          assert.equal(err.name, 'ConfigError');
          assert.doesNotMatch(err.message, /\n/);
          const head = `config: ${key} = `;
          assert.ok(err.message.startsWith(head), err.message);
          assert.ok(err.message.includes(` (from ${from}): `), err.message);
          assert.match(err.message.slice(err.message.indexOf(` (from ${from}): `)), expected);
          return true;
        });
      });
    }

    it('should show the value as it was given', () => {
      const file = writeConfig({ capture: { ringBufferBytes: 1000 } });
      assert.throws(() => loadConfig({ config: file }, {}),
        { message: `config: capture.ringBufferBytes = 1000 (from --config ${file}): expected a power of two from 4096 to 1073741824` });
      assert.throws(() => loadConfig({}, { TCPSPAN_PORTS: '80,http' }),
        { message: 'config: filter.ports = [80,"http"] (from TCPSPAN_PORTS): expected a list of up to 16 ports, each from 1 to 65535' });
    });

    it('should refuse a batch larger than the queue, naming where both came from', () => {
      assert.throws(() => loadConfig({}, { OTEL_BSP_MAX_QUEUE_SIZE: '1024', OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '4096' }), {
        name: 'ConfigError',
        message: 'config: export.batch.maxExportBatchSize = 4096 (from OTEL_BSP_MAX_EXPORT_BATCH_SIZE): ' +
          'expected at most export.batch.maxQueueSize (1024, from OTEL_BSP_MAX_QUEUE_SIZE)',
      });
    });

    it('should refuse otlp without an endpoint', () => {
      const needs = 'expected an OTLP endpoint as well: set OTEL_EXPORTER_OTLP_ENDPOINT or --otlp-endpoint';
      assert.throws(() => loadConfig({}, { OTEL_TRACES_EXPORTER: 'otlp' }), { message: `config: export.traces = "otlp" (from OTEL_TRACES_EXPORTER): ${needs}` });
      const file = writeConfig({ export: { metrics: 'otlp' } });
      assert.throws(() => loadConfig({ config: file }, {}), { message: `config: export.metrics = "otlp" (from --config ${file}): ${needs}` });
    });
  });

  describe('the config file', () => {
    it('should refuse an unknown key, naming it', () => {
      const file = writeConfig({ filter: { port: [80] } });
      assert.throws(() => loadConfig({ config: file }, {}), {
        name: 'ConfigError',
        message: `config: filter.port = [80] (from --config ${file}): unknown key; expected only the keys of config/default.json`,
      });
      const top = writeConfig({ exporter: { traces: 'otlp' } });
      assert.throws(() => loadConfig({ config: top }, {}), { message: `config: exporter.traces = "otlp" (from --config ${top}): unknown key; expected only the keys of config/default.json` });
    });

    it('should refuse keys with dots and keys every object has as unknown, naming the file (found by fuzzing)', () => {
      const unknown = 'unknown key; expected only the keys of config/default.json';
      const dotted = writeConfig({ export: { 'batch.maxRetries': 2 } });
      assert.throws(() => loadConfig({ config: dotted }, {}), { message: `config: export.batch.maxRetries = 2 (from --config ${dotted}): ${unknown}` });
      const proto = writeConfig({ filter: { toString: 1 } });
      assert.throws(() => loadConfig({ config: proto }, {}), { message: `config: filter.toString = 1 (from --config ${proto}): ${unknown}` });
      const inherited = writeConfig({ constructor: {} });
      assert.throws(() => loadConfig({ config: inherited }, {}), { message: `config: constructor = {} (from --config ${inherited}): ${unknown}` });
    });

    it('should keep a message with a line break in the value on one line, naming the key (found by fuzzing)', () => {
      assert.throws(() => loadConfig({}, { TCPSPAN_ADDRS: '10.0.0.0/8,a\rb' }), (err: Error) => {
        assert.doesNotMatch(err.message, /[\r\n]/);
        assert.match(err.message, /^config: filter\.addrs = \["10\.0\.0\.0\/8","a\\rb"\] \(from TCPSPAN_ADDRS\): expected a list of up to 16 addresses or CIDRs/);
        return true;
      });
    });

    it('should refuse a value where a group of keys belongs', () => {
      const file = writeConfig({ correlator: 5 });
      assert.throws(() => loadConfig({ config: file }, {}), {
        message: `config: correlator = 5 (from --config ${file}): expected an object with keys maxConnections, maxEventsPerSpan, lingerMs, maxPendingSynAcks, checkpointMs`,
      });
      const leaf = writeConfig({ capture: { ringBufferBytes: { bytes: 4096 } } });
      assert.throws(() => loadConfig({ config: leaf }, {}), { message: /^config: capture\.ringBufferBytes = \{"bytes":4096\} .*: expected a power of two/ });
    });

    it('should refuse a file it cannot read', () => {
      const missing = path.join(dir, 'missing.json');
      assert.throws(() => loadConfig({ config: missing }, {}), {
        name: 'ConfigError',
        message: `config: cannot read --config ${missing}: ENOENT: no such file or directory: expected a readable JSON file of settings such as config/default.json`,
      });
      assert.throws(() => loadConfig({ config: dir }, {}), { message: new RegExp(`^config: cannot read --config ${dir}: EISDIR`) });
      if (process.getuid?.() !== 0) {
        const locked = writeConfig({});
        chmodSync(locked, 0);
        assert.throws(() => loadConfig({ config: locked }, {}), { message: /: EACCES: permission denied: expected a readable JSON file/ });
      }
    });

    it('should refuse a file that is not JSON, or not a JSON object, in one line', () => {
      const bad = writeConfig('{\n  "filter": {\n    "ports": [80,]\n  }\n}\n');
      assert.throws(() => loadConfig({ config: bad }, {}), (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.doesNotMatch(err.message, /\n/);
        assert.match(err.message, new RegExp(`^config: cannot parse --config ${bad}: .*: expected JSON settings such as config/default\\.json$`));
        return true;
      });
      const list = writeConfig([1, 2]);
      assert.throws(() => loadConfig({ config: list }, {}), { message: `config: --config ${list} holds [1,2]: expected a JSON object of settings such as config/default.json` });
    });
  });

  describe('exporters', () => {
    const modes = (argv: ConfigArgv, env: NodeJS.ProcessEnv) => resolveExporters(loadConfig(argv, env).export);

    it('should map OTEL_TRACES_EXPORTER onto export.traces', () => {
      const endpoint = { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317' };
      assert.equal(loadConfig({}, { ...endpoint, OTEL_TRACES_EXPORTER: 'otlp' }).export.traces, 'otlp');
      assert.equal(loadConfig({}, { OTEL_TRACES_EXPORTER: 'CONSOLE' }).export.traces, 'console');
      assert.equal(loadConfig({}, { ...endpoint, OTEL_TRACES_EXPORTER: 'none' }).export.traces, 'none');
      assert.equal(loadConfig({}, { OTEL_METRICS_EXPORTER: 'none' }).export.metrics, 'none');
      assert.equal(loadConfig({}, {}).export.traces, 'auto');
    });

    it('should resolve auto to console and no metrics without an endpoint', () => {
      assert.deepEqual(modes({}, {}), { traces: 'console', metrics: 'none' });
    });

    it('should resolve auto to otlp for both signals with an endpoint', () => {
      assert.deepEqual(modes({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317' }), { traces: 'otlp', metrics: 'otlp' });
      assert.deepEqual(modes({ 'otlp-endpoint': 'https://collector:4317' }, {}), { traces: 'otlp', metrics: 'otlp' });
    });

    it('should resolve each signal by its own endpoint, falling back to the general one', () => {
      const x = loadConfig({}, { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://traces:4317' }).export;
      assert.deepEqual([x.otlpEndpoint, x.tracesEndpoint, x.metricsEndpoint], ['', 'http://traces:4317', '']);
      assert.deepEqual(resolveExporters(x), { traces: 'otlp', metrics: 'none' });
      const y = loadConfig({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://all:4317', OTEL_EXPORTER_OTLP_METRICS_ENDPOINT: 'http://metrics:4317' }).export;
      assert.deepEqual([y.tracesEndpoint, y.metricsEndpoint], ['http://all:4317', 'http://metrics:4317']);
    });

    it('should force console with --console, and honour explicit choices over auto', () => {
      assert.deepEqual(modes({ console: true }, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_TRACES_EXPORTER: 'otlp' }), { traces: 'console', metrics: 'otlp' });
      assert.deepEqual(modes({}, { OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4317', OTEL_TRACES_EXPORTER: 'none', OTEL_METRICS_EXPORTER: 'none' }),
        { traces: 'none', metrics: 'none' });
    });
  });
});

describe('configDocs', () => {
  it('should match config/default.json key for key and value for value', () => {
    const fromSchema = Object.fromEntries(configDocs().map((d) => [d.key, d.default]));
    assert.deepEqual(flatten(DEFAULTS), fromSchema);
    // same order too, so the file reads like the documentation table
    assert.deepEqual(Object.keys(flatten(DEFAULTS)), configDocs().map((d) => d.key));
  });

  it('should document every key, and name each environment variable once', () => {
    for (const d of configDocs()) assert.ok(d.doc.length > 10, `${d.key} has no doc`);
    const envs = configDocs().flatMap((d) => (d.env ? [d.env] : []));
    assert.equal(new Set(envs).size, envs.length);
    assert.deepEqual(configDocs().filter((d) => d.flags.length).map((d) => [d.key, ...d.flags]), [
      ['filter.ports', '--port'], ['filter.addrs', '--addr'], ['correlator.checkpointMs', '--checkpoint-ms'], ['sampling.ratio', '--sampling-ratio'], ['export.traces', '--console'],
      ['export.otlpEndpoint', '--otlp-endpoint'], ['export.tracesEndpoint', '--otlp-endpoint'], ['export.metricsEndpoint', '--otlp-endpoint'],
      ['export.tracesFile', '--traces-file'], ['export.spoolDir', '--spool-dir'], ['inspect.traceparent', '--inspect-traceparent'], ['inspect.protocols', '--inspect-protocols'],
    ]);
  });
});
