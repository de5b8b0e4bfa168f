// Every command and every flag, once. Argument parsing, each command's usage text, the flags'
// configuration keys and the README's flag tables and synopses all come from these two tables.
import { parseArgs, type ParseArgsOptionsConfig } from 'node:util';
import { DEFAULT_RING_BYTES } from '../capture/ring-size.js';
import { MAX_CIDRS, MAX_PORTS } from '../decode/wire-layout.js';

export interface CommandSpec {
  /** its line in `tcpspan --help` */
  readonly summary: string;
  /** the paragraph of `tcpspan <command> --help` */
  readonly about: string;
}

export const COMMANDS = {
  run: {
    summary: 'turn every TCP connection into a span (console by default, OTLP when configured)',
    about: 'Turns every TCP connection end into one span. With no OTLP endpoint it prints one line per ' +
      'connection; with one (--otlp-endpoint or OTEL_EXPORTER_OTLP_ENDPOINT) it exports spans and ' +
      'metrics over OTLP gRPC. Stops on SIGINT/SIGTERM, flushing what it holds.',
  },
  events: {
    summary: 'print decoded kernel events as JSON lines',
    about: 'Prints every TCP lifecycle event the kernel reports, one JSON object per line, ' +
      'until SIGINT/SIGTERM; then prints the loss counters to stderr.',
  },
  doctor: {
    summary: 'check that this machine can run tcpspan, with the fix for each failure',
    about: 'Checks privileges, BTF, libbpf, tracefs, each tracepoint, ring buffers. ' +
      'Exit status 0 only when capture can run.',
  },
} as const satisfies Record<string, CommandSpec>;

export type CommandName = keyof typeof COMMANDS;

/** What parseArgs gives for a flag: a string, one per occurrence when repeatable, or true for a switch. */
export type Given = string | string[] | true;

export interface FlagSpec {
  /** without the leading -- */
  readonly name: string;
  /** the placeholder of its value in usage text; a switch when absent */
  readonly value?: string;
  readonly repeatable?: boolean;
  readonly commands: readonly CommandName[];
  /** one text for the usage and the README (backticks mark literal text in both) */
  readonly help: string;
  /**
   * The configuration keys it sets, above every other source, and the value it sets them to
   * (default: as given). A flag without it is handled by its command (`--config` by loadConfig).
   */
  readonly sets?: { readonly keys: readonly string[]; readonly value?: (given: Given) => unknown };
}

/** A decimal number as typed (`0.1`, `1`, `.5`, `1e-3`): such text becomes a Number; other text stays for the schema to refuse. */
export const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;

export const FLAGS = [
  {
    name: 'port', value: 'N', repeatable: true, commands: ['run', 'events'],
    help: `only connections with port N at either end; repeatable, at most ${MAX_PORTS}; applied in the kernel`,
    // digits become numbers; anything else stays a string for the schema to refuse, naming it
    sets: { keys: ['filter.ports'], value: (given) => (given as string[]).map((p) => (/^\d+$/.test(p) ? Number(p) : p)) },
  },
  {
    name: 'addr', value: 'CIDR', repeatable: true, commands: ['run', 'events'],
    help: `only connections with an address in CIDR at either end (\`10.0.0.0/8\`, \`::1\`, …); repeatable, at most ${MAX_CIDRS}; ` +
      'an IPv4 range also matches IPv4-mapped addresses of dual-stack sockets; applied in the kernel',
    sets: { keys: ['filter.addrs'] },
  },
  {
    name: 'config', value: 'FILE', commands: ['run'],
    help: 'a JSON file of settings (`config/default.json` lists every key with its default)',
  },
  {
    name: 'otlp-endpoint', value: 'URL', commands: ['run'],
    help: 'OTLP gRPC endpoint for traces and metrics, e.g. `http://127.0.0.1:4317`',
    // meant for both signals, over any per-signal variable
    sets: { keys: ['export.otlpEndpoint', 'export.tracesEndpoint', 'export.metricsEndpoint'] },
  },
  {
    name: 'traces-file', value: 'PATH', commands: ['run'],
    help: 'also write spans as OTLP/JSON, one `ExportTraceServiceRequest` per line (the format of the ' +
      "Collector's file exporter and `otlpjsonfile` receiver); `-` for stdout. Whole lines only: a write that fails " +
      'part way (a full disk) is cut off again, retried, then counted as dropped. A path it cannot append to is refused at start',
    sets: { keys: ['export.tracesFile'] },
  },
  {
    name: 'spool-dir', value: 'DIR', commands: ['run'],
    help: 'keep OTLP spans on disk in DIR while the collector is away (and at the shutdown deadline), bounded by ' +
      '`export.spoolMaxBytes`; they are sent first once it answers, also after tcpspan restarts or is killed',
    sets: { keys: ['export.spoolDir'] },
  },
  {
    name: 'sampling-ratio', value: 'RATIO', commands: ['run'],
    help: 'keep this share (0 to 1) of healthy connections, chosen from the trace id so both ends agree; ' +
      'failures, retransmits and slow handshakes are always kept, and metrics count every connection',
    sets: { keys: ['sampling.ratio'], value: (given) => (DECIMAL.test(given as string) ? Number(given) : given) },
  },
  {
    name: 'checkpoint-ms', value: 'MS', commands: ['run'],
    help: 'a connection open longer than MS milliseconds gets a `tcp.connection.checkpoint` span every MS (default 60000; 0: none)',
    sets: { keys: ['correlator.checkpointMs'], value: (given) => (/^\d+$/.test(given as string) ? Number(given) : given) },
  },
  {
    name: 'console', commands: ['run'],
    help: 'print console lines instead of exporting spans over OTLP',
    sets: { keys: ['export.traces'], value: () => 'console' },
  },
  {
    name: 'inspect-traceparent', commands: ['run'],
    help: 'link each connection span to the spans of the plaintext HTTP/1.x requests it carried (their `traceparent` headers)',
    sets: { keys: ['inspect.traceparent'], value: () => true },
  },
  {
    name: 'inspect-protocols', commands: ['run'],
    help: 'name the protocol (HTTP/1.x, HTTP/2, TLS with its server name, PostgreSQL, MySQL, Redis) from the first bytes each way',
    sets: { keys: ['inspect.protocols'], value: () => true },
  },
  {
    name: 'netns', value: 'INODE', commands: ['events'],
    help: 'only this network namespace (`stat -L -c %i /proc/PID/ns/net`); applied in the kernel',
  },
  {
    name: 'ring-bytes', value: 'N', commands: ['events'],
    help: `ring buffer size, a power of two (default ${DEFAULT_RING_BYTES}: about one second of events at 200k events/s)`,
  },
  {
    name: 'json', commands: ['doctor'],
    help: 'one JSON object per check instead of text lines',
  },
] as const satisfies readonly FlagSpec[];

type Flag = (typeof FLAGS)[number];
type GivenFor<F> = F extends { value: string } ? (F extends { repeatable: true } ? string[] : string) : true;

/** A command's parsed flags, by flag name; a flag not given is absent. */
export type FlagValues<C extends CommandName> = {
  readonly [F in Flag as C extends F['commands'][number] ? F['name'] : never]?: GivenFor<F>;
};

const TABLE: readonly FlagSpec[] = FLAGS;

/** The flags a command takes, in table order. */
export function flagsOf(command: CommandName): readonly FlagSpec[] {
  return TABLE.filter((f) => f.commands.includes(command));
}

/**
 * Parses a command's arguments. Errors are parseArgs' own (code ERR_PARSE_ARGS_*), one line each,
 * naming the flag: the caller prints them and exits 2. Values are checked by their handlers.
 */
export function parseFlags<C extends CommandName>(command: C, argv: string[]): { help: boolean; values: FlagValues<C> } {
  const options: ParseArgsOptionsConfig = { help: { type: 'boolean', short: 'h' } };
  for (const f of flagsOf(command)) {
    options[f.name] = { type: f.value === undefined ? 'boolean' : 'string', ...(f.repeatable && { multiple: true }) };
  }
  let values: ReturnType<typeof parseArgs>['values'];
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (err) {
    // some of parseArgs' messages run over three lines ("... is ambiguous.\nDid you forget ..."): errors are one line here
    if (err instanceof Error) err.message = err.message.replace(/\s*[\r\n\u2028\u2029]+\s*/g, ' ');
    throw err;
  }
  const given = Object.entries(values).filter(([name]) => name !== 'help');
  return { help: values['help'] === true, values: Object.fromEntries(given) as FlagValues<C> };
}

export interface FlagSetting {
  /** the flag as typed, e.g. --port: the source a bad value is blamed on */
  flag: string;
  value: unknown;
}

/** The configuration keys the given flags set, each with its flag and value. */
export function flagSettings(values: { readonly [name: string]: Given | undefined }): Map<string, FlagSetting> {
  const out = new Map<string, FlagSetting>();
  for (const f of TABLE) {
    const given = values[f.name];
    if (!f.sets || given === undefined) continue;
    const value = f.sets.value ? f.sets.value(given) : Array.isArray(given) ? [...given] : given;
    for (const key of f.sets.keys) out.set(key, { flag: `--${f.name}`, value });
  }
  return out;
}

/** The flags that set a configuration key, as typed (--port). */
export function flagsForKey(key: string): string[] {
  return TABLE.filter((f) => f.sets?.keys.includes(key)).map((f) => `--${f.name}`);
}
