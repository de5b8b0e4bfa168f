// Integration: container.id and k8s.pod.uid from the socket's cgroup. A child process moves
// itself into a cgroup v2 named as Docker or the kubelet name theirs, then serves and
// connects; both ends of its connections go under a resource with the ids, an end made outside
// the cgroup under tcpspan's.
import assert from 'node:assert/strict';
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { existsSync, mkdirSync, readFileSync, rmdirSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { createCgroupAttributor } from '../src/attribute/cgroup-attribution.js';
import { findCgroup2Mount } from '../src/attribute/cgroup-paths.js';
import { createResourceFor } from '../src/export/owner-resource.js';
import { closedPort } from './support/tcp.js';
import { startSpanSession, type SpanSession } from './support/span-session.js';

/**
 * The child: joins the cgroup, listens on the port, makes one connection to itself (send 5,
 * answer 3, close), says "done", and answers any other connection the same way until stdin closes.
 */
const CHILD = `
  const fs = require('node:fs'), net = require('node:net');
  const [procs, port] = process.argv.slice(1);
  fs.writeFileSync(procs, String(process.pid));
  const server = net.createServer((s) => {
    s.once('data', () => s.write('abc'));
    s.on('end', () => s.end());
    s.on('error', () => {});
  });
  server.listen(Number(port), '127.0.0.1', () => {
    let localPort = 0;
    const c = net.connect(Number(port), '127.0.0.1', () => { localPort = c.localPort; c.write('hello'); });
    c.once('data', () => c.end());
    c.on('close', () => process.stdout.write('done ' + localPort + '\\n'));
  });
  process.stdin.on('end', () => process.exit(0));
  process.stdin.resume();
`;

interface Layout {
  name: string;
  /** directories below the cgroup2 mount, outermost first */
  dirs: string[];
  want: { 'container.id': string; 'k8s.pod.uid'?: string };
}

describe('container.id and k8s.pod.uid from the socket\'s cgroup', function () {
  this.timeout(30_000);
  const mount = findCgroup2Mount();
  let created: string[] = [];
  let child: ChildProcessByStdio<Writable, Readable, null> | undefined;
  let session: SpanSession | undefined;

  before(function () {
    if (!mount) this.skip(); // says why in the title of the skipped tests; this machine kind has one (cgroup2 at /sys/fs/cgroup/unified)
  });

  afterEach(async () => {
    if (child && child.exitCode === null) {
      const exited = once(child, 'exit');
      child.stdin.end();
      await exited;
    }
    await session?.stop();
    // move anything left behind out, then remove what this test made, innermost first
    for (const dir of [...created].reverse()) {
      try {
        for (const pid of readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          writeFileSync(path.join(mount!.mountPoint, 'cgroup.procs'), pid);
        }
        rmdirSync(dir);
      } catch {
        // a parent another run still uses (EBUSY, ENOTEMPTY): left for it
      }
    }
    created = []; child = undefined; session = undefined;
  });

  const id = randomBytes(32).toString('hex');
  const uid = randomUUID();
  const layouts: Layout[] = [
    { name: 'a Docker container (systemd driver)', dirs: ['system.slice', `docker-${id}.scope`], want: { 'container.id': id } },
    {
      name: 'a Kubernetes pod\'s container (containerd, systemd driver)',
      dirs: ['kubepods.slice', 'kubepods-besteffort.slice', `kubepods-besteffort-pod${uid.replace(/-/g, '_')}.slice`, `cri-containerd-${id}.scope`],
      want: { 'container.id': id, 'k8s.pod.uid': uid },
    },
  ];

  for (const layout of layouts) {
    it(`should export both ends of the connections of ${layout.name} under a resource with its ids, and an end made outside it under tcpspan's`, async () => {
      let dir = mount!.mountPoint;
      for (const d of layout.dirs) {
        dir = path.join(dir, d);
        if (!existsSync(dir)) {
          mkdirSync(dir);
          created.push(dir);
        }
      }
      const port = await closedPort(4);
      session = startSpanSession({ ports: [port] }, createCgroupAttributor());
      child = spawn(process.execPath, ['-e', CHILD, path.join(dir, 'cgroup.procs'), String(port)], { stdio: ['pipe', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      const deadline = Date.now() + 15_000;
      while (!/done \d+/.test(out)) {
        assert.ok(Date.now() < deadline && child.exitCode === null, `the child did not make its connection: ${out}`);
        await new Promise((r) => setTimeout(r, 10));
      }
      const childClientPort = Number(/done (\d+)/.exec(out)![1]);
      // one connection from outside the cgroup (this process) to the child's server
      const outside = net.connect(port, '127.0.0.1');
      await once(outside, 'connect');
      const outsidePort = outside.localPort!;
      outside.write('hello');
      await once(outside, 'data');
      outside.end();
      await once(outside, 'close');
      await session.waitFor((spans) => spans.length >= 4, 15_000, 'four ends');

      const ino = statSync(dir).ino;
      // the ids are the resource's, the one each span is exported under, not the span's
      const resourceOf = createResourceFor(resourceFromAttributes({ 'service.name': 'tcpspan-test' }));
      assert.deepEqual(session.spans.filter(({ span }) => 'container.id' in span.attributes || 'k8s.pod.uid' in span.attributes), []);
      const ends = session.spans.map(({ rec, span }) => ({
        kind: span.kind,
        peerPort: span.attributes['network.peer.port'],
        localPort: span.attributes['network.local.port'],
        pid: span.attributes['process.pid'],
        cgroup: rec.cgroupId === ino ? 'the container\'s' : 'another',
        containerId: resourceOf(span.owner).attributes['container.id'],
        podUid: resourceOf(span.owner).attributes['k8s.pod.uid'],
      })).sort((a, b) => `${a.kind}:${a.localPort}:${a.peerPort}`.localeCompare(`${b.kind}:${b.localPort}:${b.peerPort}`));
      const inside = { cgroup: 'the container\'s', containerId: layout.want['container.id'], podUid: layout.want['k8s.pod.uid'] };
      const expected = [
        // the child's own connection: both ends in its cgroup
        { kind: 'client', localPort: childClientPort, peerPort: port, pid: child.pid, ...inside },
        // this process's connection: its client end is not; the server end the child accepted is (the listener's cgroup)
        { kind: 'client', localPort: outsidePort, peerPort: port, pid: process.pid, cgroup: 'another', containerId: undefined, podUid: undefined },
        { kind: 'server', localPort: port, peerPort: childClientPort, pid: child.pid, ...inside },
        { kind: 'server', localPort: port, peerPort: outsidePort, pid: child.pid, ...inside },
      ].sort((a, b) => `${a.kind}:${a.localPort}:${a.peerPort}`.localeCompare(`${b.kind}:${b.localPort}:${b.peerPort}`));
      assert.deepEqual(ends, expected);
      const summary = await session.stop();
      assert.deepEqual(summary.attributionMisses, {});
    });
  }
});
