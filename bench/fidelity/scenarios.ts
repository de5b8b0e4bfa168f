// Every way a connection lives and dies, each in a fresh two-namespace lab (a: the client's
// host, b: the server's), traced by `tcpspan run` and checked against what the kernel counted
// (nstat in each namespace, `ss -ti` before the close) and what the scenario itself did.
import type { Family, Lab, SideName } from '../../test/support/netns-lab.js';
import type { ReceivedSpan } from '../../test/support/otlp-receiver.js';
import {
  attr, deltas, endsText, endText, kindOf, must, retransmitEvents, same, sideOf, sleep, snapshot, ssWhenAcked, startTcpspan,
  stateBeforeClose, tracesText, type Agent, type Check, type Deltas, type SsInfo, type Tcpspan,
} from './harness.js';

export interface Ctx {
  lab: Lab;
  a: Agent;
  b: Agent;
}

export interface Scenario {
  name: string;
  run(ctx: Ctx): Promise<Check[]>;
}

// ---------------------------------------------------------------- sockets

let serial = 0;
const nextId = (p: string): string => `${p}${serial++}`;

const addrOf = (lab: Lab, side: SideName, family: Family): string => (family === 4 ? lab[side].addr4 : lab[side].addr6);

/** A listener in b; returns its id and port. */
async function listen(ctx: Ctx, opts: { family?: Family; autoEnd: boolean; reply?: number }): Promise<{ id: string; port: number }> {
  const id = nextId('l');
  ctx.b.send({ op: 'listen', id, host: addrOf(ctx.lab, 'b', opts.family ?? 4), port: 0, autoEnd: opts.autoEnd, ...(opts.reply && { reply: opts.reply }) });
  const r = await ctx.b.wait('listening', id);
  return { id, port: r.port };
}

interface Pair { cid: string; sid: string; clientPort: number; serverPort: number }

/** A connection from a to b's listener; resolves once both ends exist. */
async function connect(ctx: Ctx, listener: { id: string; port: number }, family: Family = 4, localPort?: number): Promise<Pair> {
  const cid = nextId('c');
  ctx.a.send({ op: 'connect', id: cid, host: addrOf(ctx.lab, 'b', family), port: listener.port, ...(localPort && { localPort }) });
  const { localPort: clientPort } = await ctx.a.wait('connected', cid);
  const deadline = Date.now() + 5000;
  for (;;) {
    const acc = ctx.b.replies().find((r) => r.ev === 'accepted' && r.id.startsWith(`${listener.id}.`) && r.remotePort === clientPort &&
      !ctx.b.replies().some((x) => x.ev === 'close' && x.id === r.id));
    if (acc && acc.ev === 'accepted') return { cid, sid: acc.id, clientPort, serverPort: listener.port };
    if (Date.now() > deadline) throw new Error(`the server did not accept the connection from port ${clientPort}`);
    await sleep(5);
  }
}

const closed = (agent: Agent, id: string, timeoutMs?: number) => agent.wait('close', id, timeoutMs);

// ---------------------------------------------------------------- checks shared by every scenario

interface Seen {
  spans: ReceivedSpan[];
  summary: string;
  exitCode: number;
  misses: Record<string, number>;
  d: Deltas;
}

/** Stops tcpspan and keeps the spans of the lab's two namespaces. */
async function collect(lab: Lab, t: Tcpspan, d: Deltas): Promise<Seen> {
  const r = await t.stop();
  return { ...r, spans: r.spans.filter((s) => sideOf(lab, s) !== undefined), d };
}

function onSide(lab: Lab, spans: ReceivedSpan[], side: SideName): ReceivedSpan[] {
  return spans.filter((s) => sideOf(lab, s) === side);
}

const perSide = (f: (side: SideName) => string): string => `a ${f('a')}, b ${f('b')}`;

/** The ends, then the kernel's counters against the spans, then tcpspan's own account. */
function common(lab: Lab, seen: Seen, ends: string[], opts: { opens?: boolean } = {}): Check[] {
  const { spans, d } = seen;
  const checks: Check[] = [same('ends', endsText(ends), endsText(spans.map(endText)))];
  if (opts.opens !== false) {
    // one client span per connect() (TcpActiveOpens), one server span per accepted connection (TcpPassiveOpens)
    checks.push(same('ends vs opens',
      perSide((s) => `${d[s].TcpActiveOpens} client, ${d[s].TcpPassiveOpens} server`),
      perSide((s) => { const m = onSide(lab, spans, s); return `${m.filter((x) => kindOf(x) === 'client').length} client, ${m.filter((x) => kindOf(x) === 'server').length} server`; })));
  }
  // TcpRetransSegs counts every retransmitted segment (SYN and SYN-ACK too); TCPSynRetrans those of SYNs and SYN-ACKs
  const sum = (side: SideName, f: (x: ReceivedSpan) => number) => onSide(lab, spans, side).reduce((n, x) => n + f(x), 0);
  const expected = perSide((s) => `${d[s].TcpRetransSegs} (syn ${d[s].TcpExtTCPSynRetrans})`);
  const byAttr = perSide((s) => `${sum(s, (x) => Number(attr(x, 'tcp.retransmits') ?? 0))} ` +
    `(syn ${sum(s, (x) => retransmitEvents(x, 'syn') + retransmitEvents(x, 'syn_ack'))})`);
  // the events (one per retransmit call, with its segment count) must add up to the attribute
  const eventsAgree = (['a', 'b'] as const).every((s) => sum(s, retransmitEvents) === sum(s, (x) => Number(attr(x, 'tcp.retransmits') ?? 0)));
  checks.push({
    what: 'retransmits vs TcpRetransSegs', expected,
    observed: eventsAgree ? byAttr : `${byAttr}; events ${perSide((s) => String(sum(s, retransmitEvents)))}`,
    ok: expected === byAttr && eventsAgree,
  });
  // the kernel counts a failed attempt when a socket closes from SYN_SENT/SYN_RECV, an established reset from ESTABLISHED/CLOSE_WAIT
  const left = (s: SideName, states: string[]) => onSide(lab, spans, s).filter((x) => states.includes(stateBeforeClose(x) ?? '')).length;
  checks.push(same('closes vs AttemptFails, EstabResets',
    perSide((s) => `${d[s].TcpAttemptFails}, ${d[s].TcpEstabResets}`),
    perSide((s) => `${left(s, ['syn_sent', 'syn_received'])}, ${left(s, ['established', 'close_wait'])}`)));
  const lost = /lost kernel events (\d+)/.exec(seen.summary)?.[1];
  const dropped = /spans dropped: (.*)$/.exec(seen.summary)?.[1];
  // events the kernel never delivered: a program's run skipped because it was already running on
  // that CPU. handle_set_state's are taken by handle_set_state_spare; the others' (the spare's
  // included: an upper bound, its runs may be for changes the first copy took) tcpspan must count.
  const uncovered = Object.entries(seen.misses).filter(([p]) => p !== 'handle_set_state').reduce((a, [, n]) => a + n, 0);
  checks.push(same('tcpspan shutdown', `exit 0, lost events ${uncovered}, spans dropped none`, `exit ${seen.exitCode}, lost events ${lost ?? '?'}, spans dropped ${dropped ?? '?'}`));
  const misses = Object.entries(seen.misses).map(([p, n]) => `${p} ${n}`).join(', ');
  checks.push({ what: 'program runs skipped (recursion_misses)', expected: `counted by tcpspan: ${uncovered}`, observed: misses || 'none', ok: String(uncovered) === lost });
  return checks;
}

/** Bytes each way of each connection against what the agents wrote and read (and ss before the close). */
function bytesCheck(spans: ReceivedSpan[], conns: { clientPort: number; sent: number; received: number; ss?: SsInfo }[]): Check {
  const find = (kind: string, port: number) => spans.find((s) => kindOf(s) === kind &&
    attr(s, kind === 'client' ? 'network.local.port' : 'network.peer.port') === port);
  const exp: string[] = [], obs: string[] = [];
  for (const c of conns) {
    const cl = find('client', c.clientPort), sv = find('server', c.clientPort);
    exp.push(`${c.sent}→${c.sent}, ${c.received}←${c.received}`);
    obs.push(`${String(cl && attr(cl, 'tcp.bytes.sent'))}→${String(sv && attr(sv, 'tcp.bytes.received'))}, ` +
      `${String(sv && attr(sv, 'tcp.bytes.sent'))}←${String(cl && attr(cl, 'tcp.bytes.received'))}`);
  }
  const ss = conns.filter((c) => c.ss).map((c) => `ss bytes_acked ${c.ss!.bytesAcked} = 1 + ${c.ss!.bytesAcked - 1}`);
  const summarize = (xs: string[]) => (new Set(xs).size === 1 && xs.length > 1 ? `${xs.length}× ${xs[0]}` : xs.join('; '));
  const e = summarize(exp), o = summarize(obs);
  const ssOk = conns.every((c) => !c.ss || c.ss.bytesAcked - 1 === c.sent);
  return { what: 'bytes (client→server, server←client... as sent/received)', expected: `${e}${ss.length ? ` (${ss.join('; ')})` : ''}`, observed: o, ok: e === o && ssOk };
}

/**
 * The client's RTT against ss's, read just before the close. The span's samples are the smoothed
 * RTT as each segment arrives (tcp_probe runs before the segment's ACK updates it), and
 * tcp.rtt.smoothed is the estimate at the end, after the FIN exchange: ss's figure lies between
 * the smallest and largest of these (±25 %).
 */
function rttCheck(spans: ReceivedSpan[], clientPort: number, ss: SsInfo): Check {
  const c = spans.find((s) => kindOf(s) === 'client' && attr(s, 'network.local.port') === clientPort);
  const us = (v: unknown) => Math.round(Number(v) * 1e6);
  const ssUs = Math.round(ss.rttMs * 1000);
  if (!c) return { what: 'client RTT (µs)', expected: `ss rtt ${ssUs} within the span's`, observed: 'no client span', ok: false };
  const [min, max, smoothed] = [us(attr(c, 'tcp.rtt.min')), us(attr(c, 'tcp.rtt.max')), us(attr(c, 'tcp.rtt.smoothed'))];
  const lo = Math.min(min, smoothed), hi = Math.max(max, smoothed);
  return {
    what: 'client RTT (µs)', expected: `ss rtt ${ssUs} within [min, max] ∪ smoothed ±25 %`,
    observed: `min ${min}, max ${max}, smoothed ${smoothed} (${String(attr(c, 'tcp.rtt.samples'))} samples)`,
    ok: ssUs >= lo * 0.75 && ssUs <= hi * 1.25,
  };
}

function tracesCheck(spans: ReceivedSpan[], expected: string): Check {
  return same('traces', expected, tracesText(spans));
}

// ---------------------------------------------------------------- scenarios

/** Orderly close; `first` closes first. Data both ways, ss read before the close. */
function orderly(first: 'client' | 'server', family: Family = 4, name?: string): Scenario {
  return {
    name: name ?? `orderly close, ${first} first`,
    async run(ctx) {
      const { lab, a, b } = ctx;
      const t = await startTcpspan(lab);
      const before = await snapshot(lab);
      const l = await listen(ctx, { family, autoEnd: first === 'client', reply: 30_000 });
      const p = await connect(ctx, l, family);
      a.send({ op: 'write', id: p.cid, bytes: 100_000 });
      await b.wait('written', p.sid);
      const ss = await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 100_000);
      await ssWhenAcked(lab.b, p.serverPort, p.clientPort, 30_000);
      if (first === 'client') a.send({ op: 'end', id: p.cid });
      else {
        b.send({ op: 'end', id: p.sid });
        await a.wait('peer-end', p.cid);
        a.send({ op: 'end', id: p.cid });
      }
      const [cc, sc] = await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
      await sleep(100);
      const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
      const other = first === 'client' ? 'server' : 'client';
      const checks = [
        ...common(lab, seen, [`${first} fin/local unset`, `${other} fin/peer unset`]),
        bytesCheck(seen.spans, [{ clientPort: p.clientPort, sent: cc.written, received: cc.read, ss }]),
        rttCheck(seen.spans, p.clientPort, ss),
        tracesCheck(seen.spans, '1 × {client, server←client}'),
      ];
      void sc;
      if (family === 6) {
        const c = seen.spans.find((s) => kindOf(s) === 'client');
        checks.push(same('IPv6 addresses',
          `ipv6 [${lab.a.addr6}]:${p.clientPort} → [${lab.b.addr6}]:${p.serverPort}`,
          c ? `${String(attr(c, 'network.type'))} [${String(attr(c, 'network.local.address'))}]:${String(attr(c, 'network.local.port'))} → ` +
            `[${String(attr(c, 'network.peer.address'))}]:${String(attr(c, 'network.peer.port'))}` : 'no client span'));
      }
      return checks;
    },
  };
}

/**
 * Both ends close before either has seen the other's FIN. veth delivers in microseconds, so two
 * FINs never cross on their own: both are dropped (nftables, in each namespace) while both ends
 * shut down, then let through. Both ends are then in FIN_WAIT1 with a FIN out; the first
 * retransmitted FIN to land finds its receiver in FIN_WAIT1 and takes it to CLOSING. Which end
 * that is depends on which timer fires first, and the other end sees its FIN acknowledged first
 * (FIN_WAIT2), so its kernel cannot tell the FINs crossed: expected is one end without an
 * initiator (CLOSING), the other `local` (or none when both timers fired together: both CLOSING), neither `peer` (the FIN_WAIT2 end hands over to a timewait socket, the CLOSING end too).
 */
const simultaneous: Scenario = {
  name: 'simultaneous close',
  async run(ctx) {
    const { lab, a, b } = ctx;
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const l = await listen(ctx, { autoEnd: false, reply: 1000 });
    const p = await connect(ctx, l);
    a.send({ op: 'write', id: p.cid, bytes: 1000 });
    await ssWhenAcked(lab.b, p.serverPort, p.clientPort, 1000);
    await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 1000);
    const dropFins = 'table inet fidelity_fin {}\ndelete table inet fidelity_fin\n' +
      'table inet fidelity_fin {\n  chain in {\n    type filter hook prerouting priority raw; policy accept;\n    tcp flags & fin == fin counter drop\n  }\n}\n';
    for (const h of [lab.a, lab.b]) await must(h, ['nft', '-f', '-'], dropFins);
    a.send({ op: 'end', id: p.cid });
    b.send({ op: 'end', id: p.sid });
    await sleep(50);
    for (const h of [lab.a, lab.b]) await must(h, ['nft', 'delete', 'table', 'inet', 'fidelity_fin']);
    const [cc] = await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
    await sleep(100);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    const checks = common(lab, seen, ['client fin unset', 'server fin unset']);
    const ends = seen.spans.map(endText).sort();
    const shape = (xs: string[]) => xs.length === 2 && xs.every((x) => / fin(\/local)? unset$/.test(x)) &&
      xs.some((x) => / fin unset$/.test(x)) && xs[0]!.startsWith('client') && xs[1]!.startsWith('server');
    checks[0] = { what: 'ends', expected: 'client fin, server fin: each CLOSING end without initiator, a FIN_WAIT2 end local', observed: ends.join('; '), ok: shape(ends) };
    const path = (s: ReceivedSpan) => s.events.filter((e) => e.name === 'tcp.state_change')
      .map((e) => String(e.attributes['network.connection.state'])).filter((x) => x !== 'syn_sent' && x !== 'syn_received' && x !== 'established').join('>');
    const paths = seen.spans.map((s) => `${kindOf(s)} ${path(s)}`).sort();
    checks.push({
      what: 'states after ESTABLISHED', expected: 'both fin_wait_1>…>closed, one through closing, no last_ack', observed: paths.join('; '),
      ok: paths.length === 2 && paths.every((x) => / fin_wait_1>.*closed$/.test(x)) && paths.some((x) => x.includes('closing')) && !paths.some((x) => x.includes('last_ack')),
    });
    checks.push(same('FIN retransmits', `a ${seen.d.a.TcpRetransSegs}, b ${seen.d.b.TcpRetransSegs}`,
      perSide((side) => String(onSide(lab, seen.spans, side).reduce((n, s) => n + retransmitEvents(s, 'fin'), 0)))));
    checks.push(bytesCheck(seen.spans, [{ clientPort: p.clientPort, sent: cc.written, received: cc.read }]));
    checks.push(tracesCheck(seen.spans, '1 × {client, server←client}'));
    return checks;
  },
};

/** An abortive close (SO_LINGER 0: RST) by `by`. */
function reset(by: 'client' | 'server'): Scenario {
  return {
    name: `RST by the ${by}`,
    async run(ctx) {
      const { lab, a, b } = ctx;
      const t = await startTcpspan(lab);
      const before = await snapshot(lab);
      const l = await listen(ctx, { autoEnd: false, reply: 2000 });
      const p = await connect(ctx, l);
      a.send({ op: 'write', id: p.cid, bytes: 5000 });
      await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 5000);
      await ssWhenAcked(lab.b, p.serverPort, p.clientPort, 2000);
      if (by === 'client') a.send({ op: 'reset', id: p.cid });
      else b.send({ op: 'reset', id: p.sid });
      const [cc] = await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
      await sleep(100);
      const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
      const other = by === 'client' ? 'server' : 'client';
      const rsts = perSide((s) => `${seen.d[s].TcpOutRsts}`);
      return [
        ...common(lab, seen, [`${by} reset_sent/local ERROR ECONNRESET`, `${other} reset_received/peer ERROR ECONNRESET`]),
        same('RSTs sent vs TcpOutRsts', rsts, perSide((s) => `${onSide(lab, seen.spans, s).filter((x) => attr(x, 'tcp.close.reason') === 'reset_sent').length}`)),
        bytesCheck(seen.spans, [{ clientPort: p.clientPort, sent: cc.written, received: cc.read }]),
        tracesCheck(seen.spans, '1 × {client, server←client}'),
      ];
    },
  };
}

const refused: Scenario = {
  name: 'refused',
  async run(ctx) {
    const { lab, a } = ctx;
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const cid = nextId('c');
    a.send({ op: 'connect', id: cid, host: lab.b.addr4, port: 9 });
    const c = await closed(a, cid);
    await sleep(100);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    return [
      ...common(lab, seen, ['client refused/peer ERROR ECONNREFUSED']),
      same('what the application saw', 'ECONNREFUSED', c.error ?? 'no error'),
      same('RST from b vs TcpOutRsts', 'b 1', `b ${seen.d.b.TcpOutRsts}`),
    ];
  },
};

const synTimeout: Scenario = {
  name: 'SYN timeout',
  async run(ctx) {
    const { lab, a } = ctx;
    // one SYN retransmit then ETIMEDOUT (1 s + 2 s) instead of the default six (127 s)
    await must(lab.a, ['sysctl', '-qw', 'net.ipv4.tcp_syn_retries=1']);
    const l = await listen(ctx, { autoEnd: true });
    await lab.dropRandom('b', 100);
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const cid = nextId('c');
    a.send({ op: 'connect', id: cid, host: lab.b.addr4, port: l.port });
    const c = await closed(a, cid, 15_000);
    await sleep(100);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    await lab.clearDrops('b');
    return [
      ...common(lab, seen, ['client timeout/local ERROR ETIMEDOUT']),
      same('what the application saw', 'ETIMEDOUT', c.error ?? 'no error'),
    ];
  },
};

/** An established connection whose data is never acknowledged: the client gives up (tcp_retries2). */
const rto: Scenario = {
  name: 'RTO (retransmission timeout)',
  async run(ctx) {
    const { lab, a, b } = ctx;
    // give up after ≈ 3 s of retransmitting (tcp_retries2 3) rather than ≈ 15 minutes
    await must(lab.a, ['sysctl', '-qw', 'net.ipv4.tcp_retries2=3']);
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const l = await listen(ctx, { autoEnd: false });
    const p = await connect(ctx, l);
    a.send({ op: 'write', id: p.cid, bytes: 1000 });
    await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 1000);
    await lab.dropRandom('b', 100);
    a.send({ op: 'write', id: p.cid, bytes: 2000 });
    const c = await closed(a, p.cid, 30_000);
    await lab.clearDrops('b');
    // the server, which never heard of it, closes: its FIN finds no socket in a and gets an RST
    b.send({ op: 'end', id: p.sid });
    await closed(b, p.sid);
    await sleep(100);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    return [
      ...common(lab, seen, ['client timeout/local ERROR ETIMEDOUT', 'server reset_received/local ERROR ECONNRESET']),
      same('what the application saw', 'ETIMEDOUT', c.error ?? 'no error'),
      bytesCheck(seen.spans, [{ clientPort: p.clientPort, sent: 1000, received: 0 }]),
      tracesCheck(seen.spans, '1 × {client, server←client}'),
    ];
  },
};

/** 1 MiB from a to b with `percent` % of the packets arriving at b dropped. */
function loss(percent: number): Scenario {
  return {
    name: `data loss ${percent} %`,
    async run(ctx) {
      const { lab, a, b } = ctx;
      const t = await startTcpspan(lab);
      const before = await snapshot(lab);
      const l = await listen(ctx, { autoEnd: true });
      await lab.dropRandom('b', percent);
      const p = await connect(ctx, l);
      const bytes = 1 << 20;
      a.send({ op: 'write', id: p.cid, bytes });
      const ss = await ssWhenAcked(lab.a, p.clientPort, p.serverPort, bytes, 60_000);
      a.send({ op: 'end', id: p.cid });
      const [cc] = await Promise.all([closed(a, p.cid, 30_000), closed(b, p.sid, 30_000)]);
      await sleep(100);
      const d = deltas(before, await snapshot(lab));
      const dropped = await lab.droppedPackets('b');
      await lab.clearDrops('b');
      const seen = await collect(lab, t, d);
      const cl = seen.spans.find((s) => kindOf(s) === 'client');
      return [
        ...common(lab, seen, ['client fin/local unset', 'server fin/peer unset']),
        // ss's total counts the data retransmitted before the close; the close's FIN may add one
        { what: 'client retransmits vs ss (before close)', expected: `≥ ${ss.totalRetrans} (ss), ${dropped} packets dropped`,
          observed: `${String(cl && attr(cl, 'tcp.retransmits'))}`, ok: Number(cl && attr(cl, 'tcp.retransmits')) >= ss.totalRetrans && ss.totalRetrans > 0 },
        bytesCheck(seen.spans, [{ clientPort: p.clientPort, sent: cc.written, received: cc.read, ss }]),
        rttCheck(seen.spans, p.clientPort, ss),
        tracesCheck(seen.spans, '1 × {client, server←client}'),
      ];
    },
  };
}

/** One client port, one server port, three connections in a row (the server closes first, so its TIME_WAIT takes the new SYN). */
const tupleReuse: Scenario = {
  name: '4-tuple reuse (3 connections)',
  async run(ctx) {
    const { lab, a, b } = ctx;
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const l = await listen(ctx, { autoEnd: false, reply: 100 });
    const localPort = 20_000 + Math.floor(Math.random() * 10_000);
    const conns: { clientPort: number; sent: number; received: number }[] = [];
    for (let i = 0; i < 3; i++) {
      const p = await connect(ctx, l, 4, localPort);
      a.send({ op: 'write', id: p.cid, bytes: 100 * (i + 1) });
      await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 100 * (i + 1));
      await ssWhenAcked(lab.b, p.serverPort, p.clientPort, 100);
      b.send({ op: 'end', id: p.sid });
      await a.wait('peer-end', p.cid);
      a.send({ op: 'end', id: p.cid });
      const [cc] = await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
      conns.push({ clientPort: p.clientPort, sent: cc.written, received: cc.read });
    }
    await sleep(100);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    const cookies = new Set(seen.spans.map((s) => attr(s, 'tcpspan.socket.cookie'))).size;
    const clientBytes = seen.spans.filter((s) => kindOf(s) === 'client').map((s) => Number(attr(s, 'tcp.bytes.sent'))).sort((x, y) => x - y);
    return [
      ...common(lab, seen, [...Array(3)].flatMap(() => ['client fin/peer unset', 'server fin/local unset'])),
      same('one 4-tuple, three lives', `port ${localPort} ×3, 6 sockets, client sent 100, 200, 300`,
        `port ${[...new Set(conns.map((c) => c.clientPort))].join(',')} ×${conns.length}, ${cookies} sockets, client sent ${clientBytes.join(', ')}`),
      tracesCheck(seen.spans, '3 × {client, server←client}'),
    ];
  },
};

/** A connection from a to b that has moved 7,000 bytes a→b and 3,000 back, every byte acked; it stays open. */
async function exchanged(ctx: Ctx): Promise<Pair> {
  const { lab, a } = ctx;
  const l = await listen(ctx, { autoEnd: true, reply: 3000 });
  const p = await connect(ctx, l);
  a.send({ op: 'write', id: p.cid, bytes: 7000 });
  await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 7000);
  await ssWhenAcked(lab.b, p.serverPort, p.clientPort, 3000);
  return p;
}

const openBeforeStart: Scenario = {
  name: 'open before start',
  async run(ctx) {
    const { lab, a, b } = ctx;
    const before = await snapshot(lab);
    const p = await exchanged(ctx);
    const t = await startTcpspan(lab);
    a.send({ op: 'write', id: p.cid, bytes: 5000 });
    await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 12_000);
    a.send({ op: 'end', id: p.cid });
    const [cc] = await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
    await sleep(100);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    return [
      // the opening was not seen: no kind, no shared trace id
      ...common(lab, seen, ['internal fin/local unset open_before_start', 'internal fin/peer unset open_before_start'], { opens: false }),
      same('bytes sent over the whole life', `a ${cc.written}, b ${cc.read}`,
        perSide((side) => onSide(lab, seen.spans, side).map((s) => String(attr(s, 'tcp.bytes.sent'))).join('/') || '-')),
      tracesCheck(seen.spans, '2 × {internal}'),
    ];
  },
};

const openAtStop: Scenario = {
  name: 'open at stop',
  async run(ctx) {
    const { lab, a, b } = ctx;
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const p = await exchanged(ctx);
    const d = deltas(before, await snapshot(lab));
    const seen = await collect(lab, t, d);
    a.send({ op: 'end', id: p.cid });
    await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
    return [
      ...common(lab, seen, ['client incomplete unset', 'server incomplete unset']),
      bytesCheck(seen.spans, [{ clientPort: p.clientPort, sent: 7000, received: 3000 }]),
      tracesCheck(seen.spans, '1 × {client, server←client}'),
    ];
  },
};

const concurrent: Scenario = {
  name: '1,000 concurrent in bursts of 250',
  async run(ctx) {
    const { lab, a } = ctx;
    const t = await startTcpspan(lab);
    const before = await snapshot(lab);
    const l = await listen(ctx, { autoEnd: true, reply: 200 });
    const id = nextId('burst');
    a.send({ op: 'burst', id, host: lab.b.addr4, port: l.port, total: 1000, concurrency: 250, send: 100, expect: 200 });
    const r = await a.wait('burst-done', id, 120_000);
    await sleep(300);
    const seen = await collect(lab, t, deltas(before, await snapshot(lab)));
    const bytes = endsText(seen.spans.map((s) => `${kindOf(s)} ${String(attr(s, 'tcp.bytes.sent'))}→ ${String(attr(s, 'tcp.bytes.received'))}←`));
    return [
      same('connections completed', '1000 ok, 0 failed', `${r.ok} ok, ${r.failed} failed${r.errors.length ? ` (${r.errors.join(', ')})` : ''}`),
      same('spans', '2000', String(seen.spans.length)),
      // informational: a burst beyond the SYN queue makes b answer with SYN cookies (no request socket)
      same('b: SYN cookies sent/received, listen overflows', `${seen.d.b.TcpExtSyncookiesSent}/${seen.d.b.TcpExtSyncookiesRecv}, ${seen.d.b.TcpExtListenOverflows}`,
        `${seen.d.b.TcpExtSyncookiesSent}/${seen.d.b.TcpExtSyncookiesRecv}, ${seen.d.b.TcpExtListenOverflows}`),
      ...common(lab, seen, [...Array(1000)].flatMap(() => ['client fin/local unset', 'server fin/peer unset'])),
      same('bytes (sent→ received←)', '1000× client 100→ 200←; 1000× server 200→ 100←', bytes),
      tracesCheck(seen.spans, '1000 × {client, server←client}'),
    ];
  },
};

/** Two tcpspan instances, each watching one namespace (TCPSPAN_NETNS), as two hosts that never talk. */
const twoHosts: Scenario = {
  name: 'two tcpspan instances as two hosts',
  async run(ctx) {
    const { lab, a, b } = ctx;
    const ta = await startTcpspan(lab, { TCPSPAN_NETNS: String(lab.a.netnsInode()), OTEL_SERVICE_NAME: 'host-a' });
    const tb = await startTcpspan(lab, { TCPSPAN_NETNS: String(lab.b.netnsInode()), OTEL_SERVICE_NAME: 'host-b' });
    const before = await snapshot(lab);
    const l = await listen(ctx, { autoEnd: true, reply: 500 });
    const ports: number[] = [];
    for (let i = 0; i < 5; i++) {
      const p = await connect(ctx, l);
      a.send({ op: 'write', id: p.cid, bytes: 1000 });
      await ssWhenAcked(lab.a, p.clientPort, p.serverPort, 1000);
      await ssWhenAcked(lab.b, p.serverPort, p.clientPort, 500);
      a.send({ op: 'end', id: p.cid });
      await Promise.all([closed(a, p.cid), closed(b, p.sid)]);
      ports.push(p.clientPort);
    }
    await sleep(100);
    const d = deltas(before, await snapshot(lab));
    const [sa, sb] = [await collect(lab, ta, d), await collect(lab, tb, d)];
    const both: Seen = { ...sa, spans: [...sa.spans, ...sb.spans], summary: `${sa.summary} | ${sb.summary}`, misses: { ...sa.misses } };
    for (const [k, n] of Object.entries(sb.misses)) both.misses[k] = (both.misses[k] ?? 0) + n;
    both.exitCode = sa.exitCode || sb.exitCode;
    const where = (s: Seen) => endsText(s.spans.map((x) => `${kindOf(x)} in ${sideOf(lab, x)!}`));
    const joined = ports.filter((port) => {
      const c = sa.spans.find((s) => attr(s, 'network.local.port') === port);
      const s = sb.spans.find((x) => attr(x, 'network.peer.port') === port);
      return c && s && c.traceId === s.traceId && s.parentSpanId === c.spanId;
    }).length;
    const checks = common(lab, both, [...Array(5)].flatMap(() => ['client fin/local unset', 'server fin/peer unset']));
    // two shutdown lines: keep the combined check honest
    checks[checks.length - 2] = same('tcpspan shutdown (each)', 'exit 0, lost events 0, spans dropped none ×2',
      [sa, sb].every((s) => s.exitCode === 0 && /lost kernel events 0;/.test(s.summary) && /spans dropped: none$/.test(s.summary))
        ? 'exit 0, lost events 0, spans dropped none ×2' : `${sa.summary} | ${sb.summary}`);
    return [
      ...checks,
      same('what each instance saw', '5× client in a | 5× server in b', `${where(sa)} | ${where(sb)}`),
      same('same trace id, server child of client', '5 of 5', `${joined} of 5`),
      same('services', 'host-a, host-b', `${[...new Set(sa.spans.map((s) => String(s.resource['service.name'])))].join('/')}, ` +
        `${[...new Set(sb.spans.map((s) => String(s.resource['service.name'])))].join('/')}`),
    ];
  },
};

export const SCENARIOS: Scenario[] = [
  orderly('client'),
  orderly('server'),
  simultaneous,
  reset('client'),
  reset('server'),
  refused,
  synTimeout,
  rto,
  loss(2),
  loss(5),
  loss(10),
  orderly('client', 6, 'IPv6 orderly close'),
  tupleReuse,
  openBeforeStart,
  openAtStop,
  concurrent,
  twoHosts,
];
