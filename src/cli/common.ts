// Shared by the subcommands: usage errors and shutdown signals.

/** A bad flag or value: printed as one line, exit status 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

/** Calls `fn` once on the first SIGINT or SIGTERM; a second signal exits at once. */
export function onShutdownSignal(fn: () => void): void {
  let seen = false;
  const handler = (signal: NodeJS.Signals): void => {
    if (seen) {
      process.stderr.write(`tcpspan: second ${signal}, exiting without flushing\n`);
      process.exit(130);
    }
    seen = true;
    fn();
  };
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
}
