// Evaluates expressions inside another Node process through its inspector (node --inspect), so
// the bench can force a garbage collection in `tcpspan run` and read its heap without any hook
// in tcpspan itself.

export interface Inspector {
  evaluate<T>(expression: string): Promise<T>;
  close(): void;
}

/** The ws:// URL a process started with --inspect printed on stderr. */
export function inspectorUrl(stderr: string): string | undefined {
  return /Debugger listening on (ws:\/\/\S+)/.exec(stderr)?.[1];
}

export async function connectInspector(url: string): Promise<Inspector> {
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve(), { once: true });
    ws.addEventListener('error', () => reject(new Error(`bench: cannot connect to the inspector at ${url}`)), { once: true });
  });
  let next = 1;
  const waiting = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.addEventListener('message', (ev) => {
    const m = JSON.parse(String(ev.data)) as { id?: number; result?: { result?: { value?: unknown }; exceptionDetails?: { text: string } }; error?: { message: string } };
    if (m.id === undefined) return;
    const w = waiting.get(m.id);
    waiting.delete(m.id);
    if (!w) return;
    if (m.error) w.reject(new Error(`inspector: ${m.error.message}`));
    else if (m.result?.exceptionDetails) w.reject(new Error(`inspector: ${m.result.exceptionDetails.text}`));
    else w.resolve(m.result?.result?.value);
  });
  return {
    evaluate<T>(expression: string): Promise<T> {
      return new Promise<T>((resolve, reject) => {
        const id = next++;
        waiting.set(id, { resolve: resolve as (v: unknown) => void, reject });
        ws.send(JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression, returnByValue: true } }));
      });
    },
    close: () => ws.close(),
  };
}
