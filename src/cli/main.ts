// tcpspan command line: dispatches to the subcommands.
import { CaptureError } from '../capture/probes.js';
import { COMMANDS } from '../config/flags.js';
import { mainUsage } from '../config/usage-text.js';
import { UsageError } from './common.js';

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
      process.stdout.write(`${mainUsage()}\n`);
      return command === undefined ? 2 : 0;
    default: {
      const names = Object.keys(COMMANDS);
      throw new UsageError(`unknown command '${command}': expected ${names.slice(0, -1).join(', ')} or ${names.at(-1)}`);
    }
  }
}

// A command is done when it returns: whatever it left pending past its deadline (an export call
// a collector never answers) must not keep the process alive. Output to pipes and files is
// synchronous on Linux, so nothing said is lost by exiting.
const exitSoon = (): void => { setTimeout(() => process.exit(), 50).unref(); };

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; exitSoon(); },
  (err: unknown) => {
    if (err instanceof CaptureError) {
      process.stderr.write(`tcpspan: ${err.stage}: ${err.message}\n`);
      for (const line of err.detail) process.stderr.write(`  ${line}\n`);
    } else if (err instanceof UsageError || (err as Error).name === 'ConfigError' || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`tcpspan: ${(err as Error).message}\n`);
      process.exitCode = 2;
      exitSoon();
      return;
    } else if (err instanceof Error && !(err as Error & { stack?: string }).stack?.includes('node:internal')) {
      process.stderr.write(`tcpspan: ${err.message}\n`);
    } else {
      process.stderr.write(`tcpspan: ${String(err)}\n`);
    }
    process.exitCode = 1;
    exitSoon();
  },
);
