// Property-based tests of configuration: random JSON files, environments and flag arrays
// give either a valid frozen configuration or one error, one line long, naming what is
// wrong (a key, a flag, a variable or the file). Never a crash of another kind.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ConfigError, configDocs, loadConfig, type ConfigArgv, type TcpspanConfig } from '../src/config/config.js';
import { FLAGS, parseFlags } from '../src/config/flags.js';
import { forAll, fuzzSeed, type Rng } from './support/fuzz.js';

const DOCS = configDocs();
const KEYS = DOCS.map((d) => d.key);
const ENV_NAMES = DOCS.flatMap((d) => (d.env ? [d.env] : []));
const RUN_FLAGS = FLAGS.filter((f) => (f.commands as readonly string[]).includes('run'));
const DEFAULT_JSON = path.resolve(__dirname, '..', '..', 'config', 'default.json');

/** Strings a user might type, and some nobody should. */
function randomString(rng: Rng): string {
  return rng.pick<() => string>([
    () => '',
    () => ' ',
    () => String(rng.int(-5, 70000)),
    () => String(2 ** rng.int(0, 40)),
    () => `${rng.int(0, 9)}.${rng.int(0, 9)}`,
    () => rng.pick(['true', 'FALSE', 'yes', 'otlp', 'console', 'none', 'auto', 'zipkin', 'null', '[]', '{}']),
    () => rng.pick(['http://localhost:4317', 'https://c:4317', 'grpc://x', 'localhost:4317', 'http://', 'http://[::1]:4317']),
    () => rng.pick(['127.0.0.1:13135', '[::1]:13135', ':80', '1.2.3.4:99999', 'host:0', 'a:b:c']),
    () => rng.pick(['10.0.0.0/8', '::1', 'fd00::/64', '1.2.3.4/33', 'example.com', '10.0.0.0/8, ::1', '80,443', '80,,http']),
    () => rng.pick(['a\nb', 'tab\there', '\u0000', 'ñ', '\u2028', '"quoted"', "it's", '-', '--port', '$(id)']),
    () => rng.bytes(rng.int(1, 12)).toString('latin1'),
    () => 'x'.repeat(rng.int(100, 400)),
  ])();
}

function randomValue(rng: Rng, depth = 0): unknown {
  return rng.pick<() => unknown>([
    () => rng.int(-10, 70000),
    () => rng.pick([0, -1, 1.5, 2 ** 31, 2 ** 53, 1e308, -0]),
    () => rng.chance(0.5),
    () => null,
    () => randomString(rng),
    () => (depth > 2 ? [] : Array.from({ length: rng.int(0, rng.chance(0.2) ? 20 : 3) }, () => randomValue(rng, depth + 1))),
    () => (depth > 2 ? {} : randomObject(rng, depth + 1)),
  ])();
}

/** Names a settings file might hold: real keys, near misses, and names objects carry anyway. */
function randomName(rng: Rng): string {
  return rng.pick<() => string>([
    () => rng.pick(KEYS).split('.').at(-1)!,
    () => rng.pick(KEYS).split('.')[0]!,
    () => rng.pick(['port', 'exporter', 'Filter', 'batch', '', ' ', 'a.b', 'a\nb']),
    () => rng.pick(['toString', 'constructor', 'hasOwnProperty', 'valueOf', '__proto__', 'prototype', 'length']),
    () => randomString(rng),
  ])();
}

function randomObject(rng: Rng, depth = 0): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (let n = rng.int(0, 4); n > 0; n--) o[randomName(rng)] = randomValue(rng, depth + 1);
  return o;
}

/** A settings file: mostly real keys with random values, some junk, some broken JSON. */
function randomFileText(rng: Rng): string {
  const o: Record<string, unknown> = rng.chance(0.3) ? JSON.parse(readFileSync(DEFAULT_JSON, 'utf8')) as Record<string, unknown> : {};
  for (let n = rng.int(0, 4); n > 0; n--) {
    const parts = rng.chance(0.85) ? rng.pick(KEYS).split('.') : [randomName(rng), ...(rng.chance(0.5) ? [randomName(rng)] : [])];
    let node = o;
    for (const p of parts.slice(0, -1)) {
      if (typeof node[p] !== 'object' || node[p] === null || Array.isArray(node[p]) || !Object.hasOwn(node, p)) {
        Object.defineProperty(node, p, { value: {}, enumerable: true, writable: true, configurable: true });
      }
      node = node[p] as Record<string, unknown>;
    }
    Object.defineProperty(node, parts.at(-1)!, { value: randomValue(rng), enumerable: true, writable: true, configurable: true });
  }
  if (rng.chance(0.1)) Object.defineProperty(o, rng.pick(KEYS).split('.')[0]!, { value: randomValue(rng), enumerable: true });
  let text = JSON.stringify(rng.chance(0.05) ? randomValue(rng) : o) ?? 'undefined';
  if (rng.chance(0.1)) text = text.slice(0, rng.int(0, text.length)); // truncated
  if (rng.chance(0.05)) text = text.replace(/,/, ',,');
  return text;
}

function randomEnv(rng: Rng): Record<string, string> {
  const env: Record<string, string> = {};
  for (let n = rng.int(0, 4); n > 0; n--) env[rng.pick([...ENV_NAMES, 'OTEL_RESOURCE_ATTRIBUTES', 'PATH', 'TCPSPAN_BOGUS'])] = randomString(rng);
  return env;
}

function randomArgv(rng: Rng): string[] {
  const argv: string[] = [];
  for (let n = rng.int(0, 5); n > 0; n--) {
    const f = rng.pick(RUN_FLAGS);
    if (f.name === 'config') continue; // files come from randomFileText
    argv.push(rng.chance(0.05) ? rng.pick(['--bogus', '-x', 'positional', '--port=', '--console=yes', '--']) : `--${f.name}`);
    if ('value' in f && rng.chance(0.95)) argv.push(randomString(rng));
  }
  return argv;
}

/** The keys whose numbers are not integers: fractions from 0 to 1. */
const FRACTIONS = new Set(['sampling.ratio']);

/** Every leaf of a loaded configuration has the type of its default; the whole is frozen. */
function assertValid(cfg: TcpspanConfig): void {
  const leaves = (o: object, prefix = ''): [string, unknown][] => Object.entries(o).flatMap(([k, v]) =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? leaves(v as object, `${prefix}${k}.`) : [[`${prefix}${k}`, v]]);
  const got = leaves(cfg);
  assert.deepEqual(got.map(([k]) => k), KEYS, 'exactly the schema\'s keys');
  for (const [k, v] of got) {
    const def = DOCS.find((d) => d.key === k)!.default;
    assert.equal(Array.isArray(v), Array.isArray(def), k);
    assert.equal(typeof v, typeof def, k);
    if (typeof v === 'number') assert.ok(FRACTIONS.has(k) ? v >= 0 && v <= 1 : Number.isSafeInteger(v), `${k} = ${v}`);
    if (typeof v === 'object' && v !== null) assert.ok(Object.isFrozen(v), `${k} is not frozen`);
  }
  const frozen = (o: object): boolean => Object.isFrozen(o) && Object.values(o).every((v) => typeof v !== 'object' || v === null || frozen(v));
  assert.ok(frozen(cfg), 'not frozen throughout');
}

/** One error, one line, naming a key, a flag, a variable or the file. */
function assertOneLineError(err: unknown, names: string[]): void {
  assert.ok(err instanceof Error, `threw a non-error: ${String(err)}`);
  const parseError = (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS') ?? false;
  assert.ok(err instanceof ConfigError || parseError, `${err.name}: ${err.message}\n${err.stack}`);
  assert.doesNotMatch(err.message, /[\n\r\u2028\u2029]/, `more than one line: ${JSON.stringify(err.message)}`);
  assert.ok(err.message.length > 10 && err.message.length < 600, `length ${err.message.length}`);
  if (err instanceof ConfigError) {
    assert.match(err.message, /^config: /);
    assert.ok(names.some((n) => err.message.includes(n)), `names none of its sources: ${err.message}`);
  }
}

describe('loadConfig (fuzzed)', function () {
  this.timeout(20_000);
  let dir: string;
  let n = 0;
  before(() => { dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-config-fuzz-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const sourcesNamed = [...KEYS, ...ENV_NAMES, ...RUN_FLAGS.map((f) => `--${f.name}`)];

  it('should give a valid configuration or one line naming the culprit, for random files, environments and flags', () => {
    let valid = 0, refused = 0;
    const runs = forAll(fuzzSeed(0x5eed0003), 1500, 2500, (rng) => ({
      file: rng.chance(0.7) ? randomFileText(rng) : undefined,
      env: randomEnv(rng),
      argv: randomArgv(rng),
    }), ({ file, env, argv }) => {
      let values: ConfigArgv;
      try {
        values = parseFlags('run', argv).values;
      } catch (err) {
        assertOneLineError(err, sourcesNamed);
        refused++;
        return;
      }
      if (file !== undefined) {
        values = { ...values, config: path.join(dir, `c${n++}.json`) };
        writeFileSync(values.config!, file);
      }
      let cfg: TcpspanConfig;
      try {
        cfg = loadConfig(values, env);
      } catch (err) {
        assertOneLineError(err, [...sourcesNamed, ...(values.config ? [values.config] : [])]);
        refused++;
        return;
      }
      assertValid(cfg);
      // what it loaded, written out as a file, loads to the same configuration
      const again = path.join(dir, `r${n++}.json`);
      writeFileSync(again, JSON.stringify(cfg));
      assert.deepEqual(loadConfig({ config: again }, {}), cfg);
      valid++;
    });
    assert.ok(runs >= 300, `only ${runs} runs in the time budget`);
    // both outcomes are exercised, or the generators drifted
    assert.ok(valid > runs / 50 && refused > runs / 50, `valid ${valid}, refused ${refused} of ${runs}`);
  });

  it('should refuse every environment value a key cannot take in one line naming the variable', () => {
    const runs = forAll(fuzzSeed(0x5eed0004), 3000, 1500, (rng) => ({ name: rng.pick(ENV_NAMES), value: randomString(rng) }), ({ name, value }) => {
      try {
        assertValid(loadConfig({}, { [name]: value }));
      } catch (err) {
        if (err instanceof assert.AssertionError) throw err;
        // the variable is the culprit, or the other half of a cross-field check (batch > queue)
        assertOneLineError(err, [`(from ${name})`, `from ${name})`]);
      }
    });
    assert.ok(runs >= 300, `only ${runs} runs in the time budget`);
  });
});
