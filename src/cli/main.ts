// tcpspan command line: dispatches to the subcommands.
import { CaptureError } from '../capture/probes.js';
import { UsageError } from './common.js';

const USAGE = `usage: tcpspan <command> [options]
  run       turn every TCP connection into a span (console by default, OTLP when configured)
  events    print decoded kernel events as JSON lines
  doctor    check that this machine can run tcpspan, with the fix for each failure
Run \`tcpspan <command> --help\` for a command's options.`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'run':
      return (await import('./run.js')).runRun(rest);
    case 'events':
      return (await import('./events.js')).runEvents(rest);
    case 'doctor':
      return (await import('./doctor.js')).runDoctor(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command '${command}': expected run, events or doctor`);
  }
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err: unknown) => {
    if (err instanceof CaptureError) {
      process.stderr.write(`tcpspan: ${err.stage}: ${err.message}\n`);
      for (const line of err.detail) process.stderr.write(`  ${line}\n`);
    } else if (err instanceof UsageError || (err as Error).name === 'ConfigError' || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`tcpspan: ${(err as Error).message}\n`);
      process.exitCode = 2;
      return;
    } else if (err instanceof Error && !(err as Error & { stack?: string }).stack?.includes('node:internal')) {
      process.stderr.write(`tcpspan: ${err.message}\n`);
    } else {
      process.stderr.write(`tcpspan: ${String(err)}\n`);
    }
    process.exitCode = 1;
  },
);
