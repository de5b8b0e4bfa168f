// OTLP over TLS: the exporters' certificate variables checked at start (one line naming the
// variable), and `tcpspan run` exporting to a receiver whose certificate a private CA signed,
// with and without a client certificate (mutual TLS).
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { otlpTlsProblem } from '../src/export/otlp-tls.js';
import { startOtlpReceiver, type OtlpReceiver } from './support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';
import { LOOPBACK, startServer, type TestServer } from './support/tcp.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');

interface Pki { dir: string; ca: string; serverKey: string; serverCert: string; clientKey: string; clientCert: string; otherKey: string }

/** A CA, a server certificate for localhost/127.0.0.1 and a client certificate it signed, made with openssl. */
function makePki(): Pki {
  const dir = mkdtempSync(path.join(tmpdir(), 'tcpspan-tls-'));
  const f = (n: string): string => path.join(dir, n);
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'pipe' }); };
  ssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', f('ca.key'), '-out', f('ca.pem'), '-days', '2', '-subj', '/CN=tcpspan test CA');
  for (const who of ['server', 'client']) {
    ssl('req', '-newkey', 'rsa:2048', '-nodes', '-keyout', f(`${who}.key`), '-out', f(`${who}.csr`), '-subj', `/CN=${who === 'server' ? 'localhost' : 'tcpspan'}`);
    writeFileSync(f(`${who}.ext`), who === 'server' ? 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' : 'extendedKeyUsage=clientAuth\n');
    ssl('x509', '-req', '-in', f(`${who}.csr`), '-CA', f('ca.pem'), '-CAkey', f('ca.key'), '-CAcreateserial', '-out', f(`${who}.pem`), '-days', '2', '-extfile', f(`${who}.ext`));
  }
  ssl('genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', f('other.key'));
  return { dir, ca: f('ca.pem'), serverKey: f('server.key'), serverCert: f('server.pem'), clientKey: f('client.key'), clientCert: f('client.pem'), otherKey: f('other.key') };
}

describe('OTLP over TLS', function () {
  this.timeout(90_000);
  let pki: Pki;
  before(() => { pki = makePki(); });
  after(() => { rmSync(pki.dir, { recursive: true, force: true }); });

  describe('otlpTlsProblem', () => {
    const url = 'https://collector.example:4317';

    it('should accept no variables, a CA alone, and a CA with a matching client key and certificate', () => {
      assert.deepEqual(otlpTlsProblem('TRACES', url, {}), {});
      assert.deepEqual(otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CERTIFICATE: pki.ca }), {});
      assert.deepEqual(otlpTlsProblem('METRICS', url, {
        OTEL_EXPORTER_OTLP_CERTIFICATE: pki.ca, OTEL_EXPORTER_OTLP_CLIENT_KEY: pki.clientKey, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: pki.clientCert,
      }), {});
    });

    it('should name the variable and the fix for a file it cannot read', () => {
      const { error } = otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CERTIFICATE: '/nonexistent/ca.pem' });
      assert.equal(error, 'OTEL_EXPORTER_OTLP_CERTIFICATE=/nonexistent/ca.pem: cannot read it (ENOENT); ' +
        "set it to a PEM file of the CA certificate(s) that signed the collector's certificate");
      assert.match(otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CERTIFICATE: pki.dir }).error!, /cannot read it \(EISDIR\)/);
    });

    it('should take the signal\'s own variable before the shared one, as the SDK does', () => {
      const env = { OTEL_EXPORTER_OTLP_CERTIFICATE: pki.ca, OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE: '/nonexistent/traces-ca.pem' };
      assert.match(otlpTlsProblem('TRACES', url, env).error!, /^OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE=\/nonexistent\/traces-ca\.pem: cannot read it/);
      assert.deepEqual(otlpTlsProblem('METRICS', url, env), {});
    });

    it('should refuse a file that is not PEM, naming what it should be', () => {
      const junk = path.join(pki.dir, 'junk.pem');
      writeFileSync(junk, 'not a certificate\n');
      assert.match(otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CERTIFICATE: junk }).error!,
        /^OTEL_EXPORTER_OTLP_CERTIFICATE=.*junk\.pem: not a PEM file of the CA certificate/);
      assert.match(otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CLIENT_KEY: pki.clientCert, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: pki.clientCert }).error!,
        /^OTEL_EXPORTER_OTLP_CLIENT_KEY=.*: not a PEM file of the private key/);
    });

    it('should refuse a client key without its certificate, and a key that is not the certificate\'s', () => {
      assert.match(otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CLIENT_KEY: pki.clientKey }).error!,
        /^OTEL_EXPORTER_OTLP_CLIENT_KEY is set without OTEL_EXPORTER_OTLP_\[TRACES_\]CLIENT_CERTIFICATE/);
      assert.match(otlpTlsProblem('TRACES', url, { OTEL_EXPORTER_OTLP_CLIENT_KEY: pki.otherKey, OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: pki.clientCert }).error!,
        /other\.key is not the key of OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE=/);
    });

    it('should warn, not fail, when the files are set for a plaintext endpoint', () => {
      const r = otlpTlsProblem('TRACES', 'http://127.0.0.1:4317', { OTEL_EXPORTER_OTLP_CERTIFICATE: '/nonexistent/ca.pem' });
      assert.equal(r.error, undefined);
      assert.match(r.warning!, /^OTEL_EXPORTER_OTLP_CERTIFICATE set but the traces endpoint http:\/\/127\.0\.0\.1:4317 is plaintext/);
    });
  });

  describe('tcpspan run', () => {
    let receiver: OtlpReceiver | undefined;
    let server: TestServer | undefined;
    let run: ReadyProcess | undefined;
    afterEach(async () => {
      if (run && run.child.exitCode === null) await run.stop();
      await server?.close();
      await receiver?.close();
      run = undefined; server = undefined; receiver = undefined;
    });

    async function spansOverTls(tlsEnv: Record<string, string>, clientCa?: Buffer): Promise<void> {
      receiver = await startOtlpReceiver({ tls: { key: readFileSync(pki.serverKey), cert: readFileSync(pki.serverCert), ...(clientCa ? { clientCa } : {}) } });
      server = await startServer(4);
      run = await spawnUntilReady(process.execPath, [MAIN, 'run', '--port', String(server.port)], {
        ready: 'running:',
        env: { PATH: process.env['PATH'] ?? '', OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: receiver.endpoint,
          // a secret header: never in tcpspan's output
          OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer s3cr3t-token', ...tlsEnv },
      });
      const s = net.connect(server.port, LOOPBACK[4]);
      await once(s, 'connect');
      s.end();
      await once(s, 'close');
      const spans = await receiver.waitForSpans(2, 20_000);
      assert.deepEqual(spans.map((x) => x.kindName).sort(), ['SPAN_KIND_CLIENT', 'SPAN_KIND_SERVER']);
      assert.equal(await run.stop(), 0);
      assert.doesNotMatch(run.stderr() + run.stdout(), /s3cr3t-token/);
    }

    it('should export to a collector whose certificate a private CA signed (OTEL_EXPORTER_OTLP_CERTIFICATE)', async () => {
      await spansOverTls({ OTEL_EXPORTER_OTLP_CERTIFICATE: pki.ca });
    });

    it('should export with a client certificate to a collector that requires one (mutual TLS)', async () => {
      await spansOverTls({ OTEL_EXPORTER_OTLP_CERTIFICATE: pki.ca, OTEL_EXPORTER_OTLP_CLIENT_KEY: pki.clientKey,
        OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE: pki.clientCert }, readFileSync(pki.ca));
    });

    it('should refuse an unreadable certificate with one line and exit status 2, before attaching anything', async () => {
      const child = spawn(process.execPath, [MAIN, 'run'], { stdio: ['ignore', 'pipe', 'pipe'],
        env: { PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: 'https://localhost:4317', OTEL_EXPORTER_OTLP_CERTIFICATE: '/nonexistent/ca.pem' } });
      let err = '';
      child.stderr!.on('data', (d: Buffer) => { err += d.toString(); });
      const [code] = (await once(child, 'exit')) as [number];
      assert.equal(code, 2, err);
      assert.equal(err.trim().split('\n').length, 1, err);
      assert.match(err, /^tcpspan: export: OTEL_EXPORTER_OTLP_CERTIFICATE=\/nonexistent\/ca\.pem: cannot read it \(ENOENT\)/);
    });
  });
});
