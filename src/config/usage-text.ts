// The text of `tcpspan --help` and `tcpspan <command> --help`, from the command and flag tables.
import { COMMANDS, flagsOf, type CommandName, type FlagSpec } from './flags.js';

const WIDTH = 100;

/** `--port N`, or `--console` for a switch. */
export function flagForm(f: FlagSpec): string {
  return f.value === undefined ? `--${f.name}` : `--${f.name} ${f.value}`;
}

/** `tcpspan run [--port N]... [--config FILE] ...`, wrapped under its first option; `lead` is what precedes it on the line. */
export function synopsis(command: CommandName, lead = ''): string {
  const head = `${lead}tcpspan ${command}`;
  const words = flagsOf(command).map((f) => `[${flagForm(f)}]${f.repeatable ? '...' : ''}`);
  return wrap(words, head, ' '.repeat(head.length + 1), WIDTH);
}

export function usageText(command: CommandName): string {
  const flags = flagsOf(command);
  const column = Math.max(...flags.map((f) => flagForm(f).length)) + 2;
  const lines = [
    synopsis(command, 'usage: '),
    wrap(COMMANDS[command].about.split(' '), '  ', '  ', WIDTH),
    ...flags.map((f) => wrap(f.help.split(' '), `  ${flagForm(f).padEnd(column)}`, ' '.repeat(column + 2), WIDTH)),
  ];
  return lines.join('\n');
}

export function mainUsage(): string {
  const names = Object.keys(COMMANDS) as CommandName[];
  const column = Math.max(...names.map((n) => n.length)) + 4;
  return [
    'usage: tcpspan <command> [options]',
    ...names.map((n) => `  ${n.padEnd(column)}${COMMANDS[n].summary}`),
    'Run `tcpspan <command> --help` for a command\'s options.',
  ].join('\n');
}

/** Words after `first` on one line, then on lines starting with `indent`, each at most `width` wide where the words allow. */
function wrap(words: readonly string[], first: string, indent: string, width: number): string {
  const lines: string[] = [];
  let line = first;
  let empty = true; // nothing after the line's lead yet
  for (const w of words) {
    if (!empty && line.length + 1 + w.length > width) {
      lines.push(line);
      line = indent + w;
    } else {
      line += (empty && /\s$/.test(line) ? '' : ' ') + w;
    }
    empty = false;
  }
  lines.push(line);
  return lines.join('\n');
}
