// Integration: a server end is attributed to the process that accepted it (the
// syscalls:sys_exit_accept4 / sys_exit_accept programs), so a server end reset by its peer
// before its process closes it still names its process. Real kernel, real processes: the
// server is a C program of its own (test/support/accept-server.c), the client this process.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { buildAcceptServer, startAcceptServer, type AcceptServer } from './support/accept-server.js';
import { startSpanSession, type SpanSession } from './support/span-session.js';
import type { AttributeValue } from '../src/correlate/connection-record.js';

/** The attributes that differ from run to run (times, counters of the handshake, ids); the rest are compared whole. */
const VOLATILE = new Set(['tcpspan.socket.cookie', 'tcpspan.netns', 'tcp.handshake.duration', 'tcp.rtt.min', 'tcp.rtt.avg', 'tcp.rtt.max',
  'tcp.rtt.samples', 'tcp.rtt.smoothed', 'tcp.segments.sent', 'tcp.segments.received']);

function stable(attributes: Record<string, AttributeValue>): Record<string, AttributeValue> {
  return Object.fromEntries(Object.entries(attributes).filter(([k]) => !VOLATILE.has(k)));
}

interface Case {
  name: string;
  listen: string;
  v6only?: boolean;
  connect: string;
  syscall: 'accept' | 'accept4';
  /** the server end's addresses as the server socket has them */
  serverAddress: string;
  serverType: 'ipv4' | 'ipv6';
}

const CASES: Case[] = [
  { name: 'IPv4, accept4()', listen: '127.0.0.1', connect: '127.0.0.1', syscall: 'accept4', serverAddress: '127.0.0.1', serverType: 'ipv4' },
  { name: 'IPv4, accept()', listen: '127.0.0.1', connect: '127.0.0.1', syscall: 'accept', serverAddress: '127.0.0.1', serverType: 'ipv4' },
  { name: 'IPv6, accept4()', listen: '::1', connect: '::1', syscall: 'accept4', serverAddress: '::1', serverType: 'ipv6' },
  // an IPv6 socket taking an IPv4 connection: its end has IPv4-mapped addresses
  { name: 'a dual-stack IPv6 socket accepting IPv4', listen: '::', v6only: false, connect: '127.0.0.1', syscall: 'accept4', serverAddress: '::ffff:127.0.0.1', serverType: 'ipv6' },
];

describe('server ends attributed at accept', function () {
  this.timeout(30_000);
  let server: AcceptServer | undefined;
  let session: SpanSession | undefined;
  let client: net.Socket | undefined;

  before(() => { buildAcceptServer(); });

  afterEach(async () => {
    client?.destroy();
    await server?.stop();
    await session?.stop();
    server = undefined; session = undefined; client = undefined;
  });

  for (const c of CASES) {
    it(`should give a server end reset by its peer, before its process closed it, the accepting process (${c.name})`, async () => {
      server = await startAcceptServer(c.listen, { ...(c.v6only !== undefined && { v6only: c.v6only }), syscall: c.syscall });
      assert.notEqual(server.pid, process.pid);
      session = startSpanSession({ ports: [server.port] });
      client = net.connect(server.port, c.connect);
      await once(client, 'connect');
      const clientPort = client.localPort!;
      client.write('hello');
      await server.line('read ');
      // SO_LINGER 0 and close: an RST; the server process never closes its end (it waits on stdin)
      client.resetAndDestroy();
      await server.line('reset');
      await session.waitFor((spans) => spans.length >= 2, 15_000, 'both ends');

      const serverSpan = session.spans.find((s) => s.span.kind === 'server');
      const clientSpan = session.spans.find((s) => s.span.kind === 'client');
      assert.ok(serverSpan && clientSpan, `spans: ${session.spans.map((s) => s.span.kind).join(', ')}`);
      assert.deepEqual(stable(serverSpan.span.attributes), {
        'network.transport': 'tcp',
        'network.type': c.serverType,
        'network.local.address': c.serverAddress,
        'network.local.port': server.port,
        'network.peer.address': c.serverAddress,
        'network.peer.port': clientPort,
        'tcp.close.reason': 'reset_received',
        'tcp.retransmits': 0,
        'error.type': 'ECONNRESET',
        // the accepting process: never the client's, which the softirq transitions would have seen
        'process.pid': server.pid,
        'process.executable.name': 'accept-server',
        'tcp.close.initiator': 'peer',
        'tcp.bytes.sent': 0,
        'tcp.bytes.received': 5,
      });
      assert.deepEqual(stable(clientSpan.span.attributes), {
        'network.transport': 'tcp',
        'network.type': c.connect.includes(':') ? 'ipv6' : 'ipv4',
        'network.local.address': c.connect,
        'network.local.port': clientPort,
        'network.peer.address': c.connect,
        'network.peer.port': server.port,
        'tcp.close.reason': 'reset_sent',
        'tcp.retransmits': 0,
        'error.type': 'ECONNRESET',
        'process.pid': process.pid,
        'process.executable.name': path.basename(process.execPath).slice(0, 15),
        'tcp.close.initiator': 'local',
        'tcp.bytes.sent': 5,
        'tcp.bytes.received': 0,
      });
    });
  }
});
