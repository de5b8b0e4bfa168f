import assert from 'node:assert/strict';
import { configDocs } from '../src/config/config.js';
import { COMMANDS, FLAGS, flagSettings, flagsOf, parseFlags, type CommandName } from '../src/config/flags.js';
import { flagForm, mainUsage, synopsis, usageText } from '../src/config/usage-text.js';

const COMMAND_NAMES = Object.keys(COMMANDS) as CommandName[];

describe('flags', () => {
  describe('the table', () => {
    it('should give each command its flags, in table order', () => {
      const names = (c: CommandName) => flagsOf(c).map((f) => f.name);
      assert.deepEqual(names('run'), ['port', 'addr', 'config', 'otlp-endpoint', 'traces-file', 'spool-dir', 'sampling-ratio', 'checkpoint-ms', 'console', 'inspect-traceparent',
        'inspect-protocols']);
      assert.deepEqual(names('events'), ['port', 'addr', 'netns', 'ring-bytes']);
      assert.deepEqual(names('doctor'), ['json']);
    });

    it('should name each flag once, and only commands that exist', () => {
      assert.equal(new Set(FLAGS.map((f) => f.name)).size, FLAGS.length);
      for (const f of FLAGS) for (const c of f.commands) assert.ok(c in COMMANDS, `--${f.name}: unknown command ${c}`);
    });

    it('should set only configuration keys the schema declares', () => {
      const keys = new Set(configDocs().map((d) => d.key));
      for (const f of FLAGS) {
        for (const key of 'sets' in f ? f.sets.keys : []) assert.ok(keys.has(key), `--${f.name} sets ${key}, which the schema lacks`);
      }
    });

    it("should let every flag of run set a key, except --config which names the file", () => {
      assert.deepEqual(flagsOf('run').filter((f) => !f.sets).map((f) => f.name), ['config']);
    });
  });

  describe('parseFlags', () => {
    it('should give strings, lists for repeatable flags and true for switches, and nothing for absent flags', () => {
      assert.deepEqual(parseFlags('run', ['--port', '80', '--port=443', '--otlp-endpoint', 'http://c:4317', '--console']),
        { help: false, values: { port: ['80', '443'], 'otlp-endpoint': 'http://c:4317', console: true } });
      assert.deepEqual(parseFlags('events', ['--netns', '4026531840', '--addr', '::1']),
        { help: false, values: { netns: '4026531840', addr: ['::1'] } });
      assert.deepEqual(parseFlags('doctor', []), { help: false, values: {} });
    });

    it('should take -h and --help for every command', () => {
      for (const c of COMMAND_NAMES) {
        assert.equal(parseFlags(c, ['-h']).help, true);
        assert.equal(parseFlags(c, ['--help']).help, true);
      }
    });

    it("should refuse another command's flag, an unknown flag, a missing value and a positional argument in one line", () => {
      const refuses = (c: CommandName, argv: string[], code: string, message: string) =>
        assert.throws(() => parseFlags(c, argv), (err: Error & { code?: string }) => {
          assert.deepEqual({ code: err.code, message: err.message }, { code, message });
          return true;
        });
      refuses('events', ['--console'], 'ERR_PARSE_ARGS_UNKNOWN_OPTION', "Unknown option '--console'");
      refuses('run', ['--ring-bytes', '4096'], 'ERR_PARSE_ARGS_UNKNOWN_OPTION', "Unknown option '--ring-bytes'");
      refuses('run', ['--port'], 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE', "Option '--port <value>' argument missing");
      refuses('doctor', ['--json=yes'], 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE', "Option '--json' does not take an argument");
      refuses('run', ['extra'], 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL', "Unexpected argument 'extra'. This command does not take positional arguments");
      // found by test/config-fuzz.test.ts: parseArgs' own text runs over three lines here, and a value may hold \r
      refuses('run', ['--addr', '--addr'], 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE',
        "Option '--addr' argument is ambiguous. Did you forget to specify the option argument for '--addr'? To specify an option argument starting with a dash use '--addr=-XYZ'.");
      refuses('run', ['a\rb'], 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL', "Unexpected argument 'a b'. This command does not take positional arguments");
    });
  });

  describe('flagSettings', () => {
    it('should map each given flag onto its keys, named as typed', () => {
      const settings = flagSettings(parseFlags('run', ['--port', '80', '--port', 'http', '--addr', '10.0.0.0/8',
        '--otlp-endpoint', 'http://c:4317', '--traces-file', '-', '--console', '--config', 'x.json']).values);
      assert.deepEqual(Object.fromEntries(settings), {
        'filter.ports': { flag: '--port', value: [80, 'http'] }, // the schema refuses 'http', naming --port
        'filter.addrs': { flag: '--addr', value: ['10.0.0.0/8'] },
        'export.otlpEndpoint': { flag: '--otlp-endpoint', value: 'http://c:4317' },
        'export.tracesEndpoint': { flag: '--otlp-endpoint', value: 'http://c:4317' },
        'export.metricsEndpoint': { flag: '--otlp-endpoint', value: 'http://c:4317' },
        'export.tracesFile': { flag: '--traces-file', value: '-' },
        'export.traces': { flag: '--console', value: 'console' },
      });
    });

    it('should set nothing for flags not given', () => {
      assert.equal(flagSettings({}).size, 0);
    });
  });

  describe('usage text', () => {
    it("should list every command with its summary", () => {
      const text = mainUsage();
      for (const c of COMMAND_NAMES) assert.match(text, new RegExp(`^  ${c} +${COMMANDS[c].summary.replace(/[()]/g, '\\$&')}$`, 'm'));
    });

    for (const c of COMMAND_NAMES) {
      it(`should give every flag of ${c} in its synopsis and with its help, in lines of at most 100 characters`, () => {
        const text = usageText(c);
        assert.ok(text.startsWith(synopsis(c, 'usage: ')), text);
        const oneLine = text.replace(/\s+/g, ' '); // unwrapped, columns closed up
        for (const f of flagsOf(c)) {
          assert.ok(synopsis(c).includes(`[${flagForm(f)}]${f.repeatable ? '...' : ''}`), `--${f.name} is missing from the synopsis`);
          assert.ok(oneLine.includes(`${flagForm(f)} ${f.help}`), `--${f.name} is missing or differs:\n${text}`);
        }
        for (const line of text.split('\n')) assert.ok(line.length <= 100, `too long: ${line}`);
      });
    }

    it('should wrap a synopsis under its first option', () => {
      assert.equal(synopsis('run'), 'tcpspan run [--port N]... [--addr CIDR]... [--config FILE] [--otlp-endpoint URL]\n' +
        '            [--traces-file PATH] [--spool-dir DIR] [--sampling-ratio RATIO] [--checkpoint-ms MS]\n' +
        '            [--console] [--inspect-traceparent] [--inspect-protocols]');
    });
  });
});
