// The OTLP exporters' TLS files, checked before anything starts. The SDK reads
// OTEL_EXPORTER_OTLP_[TRACES_|METRICS_]CERTIFICATE, _CLIENT_KEY and _CLIENT_CERTIFICATE
// when it first connects and, if a file cannot be read, logs a diagnostic nobody sees
// and carries on without it (the system's CAs, no client certificate): the export then
// fails at every call with a handshake error far from its cause. Here the same
// variables, resolved the same way (the signal's own variable first), are read and
// parsed at start, and a problem is one line naming the variable and the fix.
// Header values (OTEL_EXPORTER_OTLP_HEADERS) are never read here nor logged anywhere.
import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

export type OtlpSignal = 'TRACES' | 'METRICS';

type FileRole = 'CERTIFICATE' | 'CLIENT_KEY' | 'CLIENT_CERTIFICATE';

interface TlsFile { variable: string; path: string }

/** The variable that sets a file for a signal, as the SDK resolves it: the signal's own first, blank = unset. */
function tlsFile(signal: OtlpSignal, role: FileRole, env: NodeJS.ProcessEnv): TlsFile | undefined {
  for (const variable of [`OTEL_EXPORTER_OTLP_${signal}_${role}`, `OTEL_EXPORTER_OTLP_${role}`]) {
    const value = env[variable]?.trim();
    if (value) return { variable, path: value };
  }
  return undefined;
}

const WHAT: Record<FileRole, string> = {
  CERTIFICATE: 'a PEM file of the CA certificate(s) that signed the collector\'s certificate',
  CLIENT_KEY: 'a PEM file of the private key of the client certificate',
  CLIENT_CERTIFICATE: 'a PEM file of the client certificate (mutual TLS)',
};

function readPem(f: TlsFile, role: FileRole): Buffer | string {
  try {
    return readFileSync(path.resolve(f.path));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    return `${f.variable}=${f.path}: cannot read it (${code}); set it to ${WHAT[role]}`;
  }
}

/**
 * What is wrong with the TLS files of one OTLP signal exporting to `url`, or undefined.
 * Only https:// endpoints use them; with http:// set, the files are ignored (a warning).
 */
export function otlpTlsProblem(signal: OtlpSignal, url: string, env: NodeJS.ProcessEnv = process.env): { error?: string; warning?: string } {
  const files = {
    CERTIFICATE: tlsFile(signal, 'CERTIFICATE', env),
    CLIENT_KEY: tlsFile(signal, 'CLIENT_KEY', env),
    CLIENT_CERTIFICATE: tlsFile(signal, 'CLIENT_CERTIFICATE', env),
  };
  const set = Object.values(files).filter((f): f is TlsFile => f !== undefined);
  if (set.length === 0) return {};
  if (!url.startsWith('https://')) {
    return { warning: `${set.map((f) => f.variable).join(', ')} set but the ${signal.toLowerCase()} endpoint ${url} is plaintext (http://): ` +
      'the files are not used; give an https:// endpoint to use TLS' };
  }
  let key: KeyObject | undefined;
  let cert: X509Certificate | undefined;
  for (const role of ['CERTIFICATE', 'CLIENT_KEY', 'CLIENT_CERTIFICATE'] as const) {
    const f = files[role];
    if (f === undefined) continue;
    const pem = readPem(f, role);
    if (typeof pem === 'string') return { error: pem };
    try {
      if (role === 'CLIENT_KEY') key = createPrivateKey(pem);
      else if (role === 'CLIENT_CERTIFICATE') cert = new X509Certificate(pem);
      else new X509Certificate(pem); // the first certificate of the bundle parses
    } catch (err) {
      return { error: `${f.variable}=${f.path}: not ${WHAT[role]} (${(err as Error).message.split('\n')[0]})` };
    }
  }
  if ((files.CLIENT_KEY === undefined) !== (files.CLIENT_CERTIFICATE === undefined)) {
    const [given, missing] = files.CLIENT_KEY ? [files.CLIENT_KEY.variable, 'CLIENT_CERTIFICATE'] : [files.CLIENT_CERTIFICATE!.variable, 'CLIENT_KEY'];
    return { error: `${given} is set without OTEL_EXPORTER_OTLP_[${signal}_]${missing}: mutual TLS needs both the client key and its certificate; set both or neither` };
  }
  if (key !== undefined && cert !== undefined && !cert.checkPrivateKey(key)) {
    return { error: `${files.CLIENT_KEY!.variable}=${files.CLIENT_KEY!.path} is not the key of ${files.CLIENT_CERTIFICATE!.variable}=${files.CLIENT_CERTIFICATE!.path}: give the key the client certificate was issued for` };
  }
  return {};
}
