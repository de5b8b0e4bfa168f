// The payload parsers (src/inspect/): pure functions of the bytes the kernel copied.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import * as incubating from '@opentelemetry/semantic-conventions/incubating';
import { ATTR_TLS_PROTOCOL_NAME, ATTR_TLS_PROTOCOL_VERSION } from '../src/correlate/semconv.js';
import { findTraceparent, parseTraceparent } from '../src/inspect/traceparent.js';
import { parseRequestLine } from '../src/inspect/http1.js';
import { parseClientHello } from '../src/inspect/tls.js';
import { identifyFromClient, identifyFromServer } from '../src/inspect/protocol.js';

const b = (s: string): Uint8Array => Buffer.from(s, 'latin1');
const TP = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';

describe('traceparent', () => {
  describe('parseTraceparent', () => {
    it('should take a version 00 value and give its ids and flags', () => {
      assert.deepEqual(parseTraceparent(b(TP)), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 1 });
      assert.deepEqual(parseTraceparent(b(`${TP.slice(0, -2)}00 \t`)), { traceId: '4bf92f3577b34da6a3ce929d0e0e4736', spanId: '00f067aa0ba902b7', flags: 0 });
      // a later version may add fields after a dash
      assert.equal(parseTraceparent(b(`cc${TP.slice(2)}-what-comes-next`))?.spanId, '00f067aa0ba902b7');
    });

    it('should refuse what the W3C format refuses', () => {
      for (const bad of [
        `ff${TP.slice(2)}`, // version ff
        `${TP}-extra`, // version 00 is exactly 55 characters
        TP.replace('4bf92f3577b34da6a3ce929d0e0e4736', '0'.repeat(32)), // all-zero trace id
        TP.replace('00f067aa0ba902b7', '0'.repeat(16)), // all-zero span id
        TP.toUpperCase(), // lowercase hex only
        TP.slice(0, 54), // cut
        TP.replace(/-/g, '_'),
        `cc${TP.slice(2)}x`, // a later version: a dash must follow
      ]) assert.equal(parseTraceparent(b(bad)), undefined, bad);
    });
  });

  describe('findTraceparent', () => {
    it('should find the header in a request head, whatever its case, with spaces around the value', () => {
      const head = `GET /a HTTP/1.1\r\nHost: x\r\nTraceParent:   ${TP}  \r\nAccept: */*\r\n\r\n`;
      assert.equal(findTraceparent(b(head))?.traceId, '4bf92f3577b34da6a3ce929d0e0e4736');
      assert.equal(findTraceparent(b(head.replace(/\r\n/g, '\n')))?.spanId, '00f067aa0ba902b7', 'bare LF line ends');
    });

    it('should find nothing in the body, in a cut line, in another header, or in a bad value', () => {
      for (const head of [
        `GET / HTTP/1.1\r\nHost: x\r\n\r\ntraceparent: ${TP}\r\n`, // after the head: body
        `GET / HTTP/1.1\r\nHost: x\r\ntraceparent: ${TP.slice(0, 30)}`, // the copy ends inside the line
        `GET / HTTP/1.1\r\nx-traceparent: ${TP}\r\n\r\n`,
        `GET / HTTP/1.1\r\ntraceparent : ${TP}\r\n\r\n`, // no space before the colon
        `GET / HTTP/1.1\r\ntracestate: ${TP}\r\n\r\n`,
        `GET / HTTP/1.1\r\ntraceparent: 00-${'0'.repeat(32)}-00f067aa0ba902b7-01\r\n\r\n`,
        'GET / HTTP/1.1', '',
      ]) assert.equal(findTraceparent(b(head)), undefined, JSON.stringify(head));
    });

    it('should take the first valid one', () => {
      const other = TP.replace('00f067aa0ba902b7', '1111111111111111');
      assert.equal(findTraceparent(b(`GET / HTTP/1.1\r\ntraceparent: junk\r\ntraceparent: ${other}\r\ntraceparent: ${TP}\r\n\r\n`))?.spanId, '1111111111111111');
    });
  });
});

describe('protocol identification', () => {
  it('should read an HTTP/1.x request line: method and version, never the target', () => {
    assert.deepEqual(parseRequestLine(b('POST /secret?x=1 HTTP/1.0\r\nHost: a\r\n\r\n')), { method: 'POST', version: '1.0' });
    assert.deepEqual(identifyFromClient(b('GET /a HTTP/1.1\r\n')), { 'network.protocol.name': 'http', 'network.protocol.version': '1.1', 'http.request.method': 'GET' });
    assert.deepEqual(identifyFromClient(b('PROPFIND /dav HTTP/1.1\r\n')),
      { 'network.protocol.name': 'http', 'network.protocol.version': '1.1', 'http.request.method': '_OTHER', 'http.request.method_original': 'PROPFIND' });
    for (const no of ['GET / HTTP/2.0\r\n', 'GET /\r\n', 'GET / HTTP/1.1', 'HTTP/1.1 200 OK\r\n', ' GET / HTTP/1.1\r\n']) {
      assert.equal(parseRequestLine(b(no)), undefined, JSON.stringify(no));
    }
  });

  it('should know the HTTP/2 connection preface', () => {
    assert.deepEqual(identifyFromClient(b('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04')), { 'network.protocol.name': 'http', 'network.protocol.version': '2' });
    assert.equal(identifyFromClient(b('PRI * HTTP/2.0\r\n\r\n')), undefined, 'cut preface');
  });

  it('should read a real ClientHello (Node\'s OpenSSL): the highest version offered and the SNI', async () => {
    const hello = await clientHello({ servername: 'db.example.test' });
    assert.deepEqual(parseClientHello(hello), { version: '1.3', serverName: 'db.example.test' });
    assert.deepEqual(identifyFromClient(hello), { 'tls.protocol.name': 'tls', 'tls.protocol.version': '1.3', 'server.address': 'db.example.test' });
    // TLS 1.2 only: no supported_versions extension, the legacy version is the offer; no SNI
    assert.deepEqual(parseClientHello(await clientHello({ maxVersion: 'TLSv1.2', servername: '' })), { version: '1.2' });
    // cut before the extensions end: the version is not guessed, what was read stays
    const cut = hello.subarray(0, hello.indexOf(Buffer.from('db.example.test')) + 15);
    assert.deepEqual(parseClientHello(cut), { serverName: 'db.example.test' });
    assert.equal(parseClientHello(hello.subarray(0, 10)), undefined);
    assert.equal(parseClientHello(b('\x16\x03\x01\x00\x10\x02')), undefined, 'a ServerHello');
  });

  it('should read PostgreSQL startup and SSL requests, MySQL greetings and Redis commands, and nothing else', () => {
    const startup = Buffer.alloc(8 + 11);
    startup.writeUInt32BE(startup.length, 0);
    startup.writeUInt32BE(0x00030000, 4);
    Buffer.from('user\0bob\0\0').copy(startup, 8);
    assert.deepEqual(identifyFromClient(startup), { 'db.system.name': 'postgresql', 'network.protocol.name': 'postgresql', 'network.protocol.version': '3.0' });
    assert.deepEqual(identifyFromClient(Buffer.from('0000000804d2162f', 'hex')), { 'db.system.name': 'postgresql', 'network.protocol.name': 'postgresql' });
    const greeting = (version: string) => {
      const body = Buffer.concat([Buffer.from([10]), Buffer.from(`${version}\0`), Buffer.alloc(40, 1)]);
      return Buffer.concat([Buffer.from([body.length, 0, 0, 0]), body]);
    };
    assert.deepEqual(identifyFromServer(greeting('8.0.36')), { 'db.system.name': 'mysql', 'network.protocol.name': 'mysql', 'network.protocol.version': '10' });
    assert.equal(identifyFromServer(greeting('5.5.5-10.11.6-MariaDB'))?.['db.system.name'], 'mariadb');
    assert.deepEqual(identifyFromClient(b('*1\r\n$4\r\nping\r\n')), { 'db.system.name': 'redis', 'network.protocol.name': 'redis', 'db.operation.name': 'PING' });
    for (const unknown of ['hello', 'SSH-2.0-OpenSSH_9.2\r\n', '*1\r\n$4\r\np1ng\r\n', '*1\r\n$40\r\nping\r\n', '\x00\x00\x00\x08\x00\x00\x00\x00', '']) {
      assert.equal(identifyFromClient(b(unknown)), undefined, JSON.stringify(unknown));
    }
    assert.equal(identifyFromServer(b('SSH-2.0-OpenSSH_9.2\r\n')), undefined);
    assert.equal(identifyFromServer(b('HTTP/1.1 200 OK\r\n')), undefined);
  });

  it('should copy the incubating TLS names exactly', () => {
    assert.deepEqual([ATTR_TLS_PROTOCOL_NAME, ATTR_TLS_PROTOCOL_VERSION], [incubating.ATTR_TLS_PROTOCOL_NAME, incubating.ATTR_TLS_PROTOCOL_VERSION]);
  });
});

/** The first bytes a Node TLS client sends (its ClientHello, from OpenSSL), caught by a plain TCP server. */
async function clientHello(opts: tls.ConnectionOptions): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const got = new Promise<Buffer>((resolve) => server.once('connection', (s) => s.once('data', (d: Buffer) => { resolve(d); s.destroy(); })));
  const t = tls.connect({ host: '127.0.0.1', port: (server.address() as net.AddressInfo).port, rejectUnauthorized: false, ...opts });
  t.on('error', () => {});
  const hello = await got;
  t.destroy();
  server.close();
  return hello;
}
