// A two-host network lab for integration tests (run as root).
//
// createLab('tsp1') builds two network namespaces, tsp1-a and tsp1-b, joined by
// a veth pair, with private addresses (10.199.X.0/24, fd00:199:X::/64) that
// exist only inside those namespaces: nothing is routed to or from the host.
// Packet loss is injected with an nftables rule in the receiving namespace,
// because sch_netem is not available on the target kernels.
//
// Typical use:
//   before(async () => { await destroyStaleLabs('tsp1'); lab = await createLab('tsp1'); });
//   after(() => lab?.destroy());

import { spawn as spawnChild, type ChildProcess } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

export type SideName = 'a' | 'b';
export type Family = 4 | 6;

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this long; default 30 s. */
  timeoutMs?: number;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  /** Throw (naming the command and its stderr) if it exits non-zero. */
  check?: boolean;
}

export interface ExecResult {
  /** Exit code, or null if the command was killed by a signal. */
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface LabHost {
  readonly side: SideName;
  /** Network namespace name, e.g. 'tsp1-a'. */
  readonly ns: string;
  /** This end of the veth pair. */
  readonly ifname: string;
  readonly addr4: string;
  readonly addr6: string;
  /** Inode of the namespace, as eBPF sees it (net->ns.inum). */
  netnsInode(): number;
  /** Runs a command inside the namespace; does not throw on non-zero exit unless opts.check. */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Starts a command inside the namespace; lab.destroy() kills it if still running. */
  spawn(cmd: string[]): ChildProcess;
  /** Absolute (not delta) SNMP/netstat counters of the namespace, named like nstat does. */
  nstat(): Promise<Record<string, number>>;
}

export interface TransferOptions {
  /** Payload size the client writes before closing. */
  bytes: number;
  /** Address family; default 4. */
  family?: Family;
  /** Side running the client (the sender); the other side runs the server. Default 'a'. */
  from?: SideName;
  /** Server port; default 0 (ephemeral, chosen by the kernel). */
  port?: number;
  /** Kill both ends and reject after this long; default 30 s. */
  timeoutMs?: number;
}

export interface TransferResult {
  family: Family;
  clientAddr: string;
  clientPort: number;
  serverAddr: string;
  serverPort: number;
  bytesSent: number;
  bytesReceived: number;
  durationMs: number;
}

export interface Lab {
  readonly name: string;
  /** X in 10.199.X.0/24 and fd00:199:X::/64. */
  readonly subnet: number;
  readonly a: LabHost;
  readonly b: LabHost;
  /** Drops `percent` % (0-100, two decimals) of TCP packets arriving on `side`'s veth. */
  dropRandom(side: SideName, percent: number): Promise<void>;
  clearDrops(side: SideName): Promise<void>;
  /** Packets dropped so far by the dropRandom rule on `side` (0 if none installed). */
  droppedPackets(side: SideName): Promise<number>;
  /** One TCP connection: client on `from` writes `bytes` to a server on the other side, then closes. */
  transfer(opts: TransferOptions): Promise<TransferResult>;
  /** Kills processes started by spawn()/transfer() and deletes both namespaces. Idempotent. */
  destroy(): Promise<void>;
}

export interface LabOptions {
  /** X in 10.199.X.0/24; default derived from the name so parallel labs rarely share it. */
  subnet?: number;
  /**
   * Keep veth segmentation offload (TCP then sends up to 64 KB super-packets,
   * and dropRandom drops a whole one at a time). Default false: one MSS per
   * packet, so a drop rate means what it would on a real wire.
   */
  segmentOffload?: boolean;
}

const NETNS_DIR = '/run/netns';
// Which process owns which lab, so cleanup never tears down a lab another
// live test run (same name, concurrent mocha) is using.
const OWNER_DIR = '/run/netns-lab';
const NFT_TABLE = 'netns_lab';
const DEFAULT_TIMEOUT_MS = 30_000;
// Plain characters only: the name becomes namespace and file names, and is
// pasted unquoted into error messages with suggested shell commands.
const LAB_NAME_RE = /^[a-z0-9][a-z0-9_-]{0,23}$/i;

// ---------------------------------------------------------------------------
// Running commands

/** Runs argv to completion, collecting output; never rejects for a non-zero exit. */
export function run(argv: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve, reject) => {
    const child = spawnChild(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`netns lab: cannot start \`${argv[0]}\`: ${err.message} (is it installed and in PATH?)`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code, signal, stdout, stderr };
      if (opts.check && code !== 0) reject(new Error(`netns lab: \`${argv.join(' ')}\` failed: ${describeFailure(result)}`));
      else resolve(result);
    });
    // An early-exiting command closes stdin under us; that is not our error.
    child.stdin.on('error', () => {});
    child.stdin.end(opts.input ?? '');
  });
}

function describeFailure(r: ExecResult): string {
  const why = r.signal ? `killed by ${r.signal}` : `exit ${r.code}`;
  const err = r.stderr.trim();
  return err ? `${why}: ${err}` : why;
}

/** Runs a setup step; on failure throws naming the step and a likely fix. */
async function mustRun(argv: string[], hint: string, input?: string): Promise<string> {
  const r = await run(argv, input === undefined ? {} : { input });
  if (r.code !== 0) {
    throw new Error(`netns lab: \`${argv.join(' ')}\` failed (${describeFailure(r)}): ${hint}`);
  }
  return r.stdout;
}

const ROOT_HINT = 'run the tests as root (CAP_NET_ADMIN and CAP_SYS_ADMIN are needed)';

// ---------------------------------------------------------------------------
// Counters

/**
 * Parses /proc/net/snmp or /proc/net/netstat (pairs of "Proto: names" /
 * "Proto: values" lines) into nstat-style names: "Tcp: RetransSegs" becomes
 * TcpRetransSegs, "TcpExt: TCPSynRetrans" becomes TcpExtTCPSynRetrans.
 * Also accepts /proc/net/snmp6 ("Ip6InReceives  123" per line).
 */
export function parseProcNetCounters(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  const lines = text.split('\n').filter((l) => l.trim() !== '');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const header = /^(\w+):\s+(.*)$/.exec(line);
    const next = lines[i + 1];
    const values = next === undefined ? null : /^(\w+):\s+(.*)$/.exec(next);
    if (header && values && header[1] === values[1]) {
      const names = header[2]!.trim().split(/\s+/);
      const nums = values[2]!.trim().split(/\s+/);
      names.forEach((n, j) => (out[header[1] + n] = Number(nums[j])));
      i++;
      continue;
    }
    const single = /^(\w+)\s+(-?\d+)$/.exec(line.trim());
    if (single) out[single[1]!] = Number(single[2]);
  }
  return out;
}

// /proc/net is per network namespace of the reader, so reading it in-process
// gives the namespace this test runs in (normally the host's).
const COUNTER_FILES = ['/proc/net/snmp', '/proc/net/netstat', '/proc/net/snmp6'];

/** Absolute counters of the namespace this process runs in (the host's). */
export function hostNstat(): Record<string, number> {
  const text = COUNTER_FILES.map((f) => {
    try {
      return readFileSync(f, 'utf8');
    } catch {
      return ''; // snmp6 is absent when IPv6 is disabled
    }
  }).join('\n');
  return parseProcNetCounters(text);
}

// ---------------------------------------------------------------------------
// Namespaces

function netnsExec(ns: string, cmd: string[]): string[] {
  return ['ip', 'netns', 'exec', ns, ...cmd];
}

/** Names of all network namespaces registered under /run/netns. */
function listNetns(): string[] {
  try {
    return readdirSync(NETNS_DIR);
  } catch {
    return []; // the directory appears with the first `ip netns add`
  }
}

/** Kills (SIGKILL, by pid) whatever still runs in ns, then deletes it; absent ns is fine. */
async function deleteNetns(ns: string): Promise<void> {
  if (!listNetns().includes(ns)) return;
  const pids = await run(['ip', 'netns', 'pids', ns]);
  for (const pid of pids.stdout.split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // already gone
    }
  }
  const r = await run(['ip', 'netns', 'del', ns]);
  if (r.code !== 0 && listNetns().includes(ns)) {
    throw new Error(`netns lab: \`ip netns del ${ns}\` failed (${describeFailure(r)}): ${ROOT_HINT}`);
  }
}

function ownerFile(lab: string): string {
  return `${OWNER_DIR}/${lab}.pid`;
}

function claimLab(lab: string): void {
  mkdirSync(OWNER_DIR, { recursive: true });
  writeFileSync(ownerFile(lab), `${process.pid}\n`);
}

/** Pid of another live process that created this lab, if any. */
function liveOtherOwner(lab: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(ownerFile(lab), 'utf8').trim());
  } catch {
    return undefined; // no record: created by hand or by an old crashed run
  }
  if (!pid || pid === process.pid) return undefined;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM' ? pid : undefined;
  }
}

/**
 * Deletes lab namespaces ('<prefix>…-a' / '-b') left over from a crashed run,
 * killing any process still inside them. Call it before createLab(). Labs
 * whose creating process is still alive are left alone (another test run is
 * using them). Returns the namespaces deleted.
 */
export async function destroyStaleLabs(prefix: string): Promise<string[]> {
  if (!prefix) throw new Error('netns lab: destroyStaleLabs needs a non-empty prefix, or it would delete every lab');
  const stale = listNetns().filter(
    (ns) => ns.startsWith(prefix) && /-[ab]$/.test(ns) && liveOtherOwner(ns.slice(0, -2)) === undefined,
  );
  for (const ns of stale) await deleteNetns(ns);
  for (const lab of new Set(stale.map((ns) => ns.slice(0, -2)))) rmSync(ownerFile(lab), { force: true });
  return stale;
}

/** A stable 1..254 from the lab name, so differently named labs usually get different subnets. */
function subnetFor(name: string): number {
  let h = 0;
  for (const c of name) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return (h % 254) + 1;
}

function makeHost(side: SideName, ns: string, subnet: number, children: Set<ChildProcess>): LabHost {
  const host = side === 'a' ? 1 : 2;
  return {
    side,
    ns,
    ifname: `veth-${side}`,
    addr4: `10.199.${subnet}.${host}`,
    addr6: `fd00:199:${subnet.toString(16)}::${host}`,
    netnsInode: () => statSync(`${NETNS_DIR}/${ns}`).ino,
    exec: (cmd, opts) => run(netnsExec(ns, cmd), opts),
    spawn: (cmd) => {
      // `ip netns exec` execs the command in place, so the child's pid is the command's.
      const child = spawnChild('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
      children.add(child);
      child.on('exit', () => children.delete(child));
      return child;
    },
    nstat: async () => {
      // cat rather than `nstat`: nstat prints deltas against a history file
      // unless told otherwise, and cat has no state to get wrong.
      const r = await run(netnsExec(ns, ['cat', ...COUNTER_FILES]));
      if (!r.stdout) throw new Error(`netns lab: cannot read counters of ${ns} (${describeFailure(r)}): does the lab still exist?`);
      return parseProcNetCounters(r.stdout);
    },
  };
}

/** Creates the namespaces, the veth pair, and the addresses; see the file comment. */
export async function createLab(name: string, opts: LabOptions = {}): Promise<Lab> {
  if (!LAB_NAME_RE.test(name)) {
    throw new Error(`netns lab: bad lab name '${name}': use 1-24 letters, digits, '_' or '-', starting with a letter or digit`);
  }
  const subnet = opts.subnet ?? subnetFor(name);
  if (!Number.isInteger(subnet) || subnet < 1 || subnet > 254) {
    throw new Error(`netns lab: subnet ${subnet} is not in 1..254`);
  }
  const children = new Set<ChildProcess>();
  const a = makeHost('a', `${name}-a`, subnet, children);
  const b = makeHost('b', `${name}-b`, subnet, children);
  for (const h of [a, b]) {
    if (!listNetns().includes(h.ns)) continue;
    const owner = liveOtherOwner(name);
    throw new Error(
      owner === undefined
        ? `netns lab: namespace ${h.ns} already exists (left over from a crashed run?): ` +
            `call destroyStaleLabs('${name}') first or run \`ip netns del ${h.ns}\``
        : `netns lab: namespace ${h.ns} belongs to live process ${owner} (another test run using the lab ` +
            `name '${name}'?): wait for it, or give this test a different lab name`,
    );
  }

  // Only namespaces this call created are ever deleted, so losing a creation
  // race to another process cannot tear down that process's lab.
  const owned: string[] = [];
  const lab = makeLab(name, subnet, a, b, children, owned);
  try {
    await setUp(name, a, b, opts.segmentOffload ?? false, owned);
  } catch (err) {
    await lab.destroy().catch(() => {}); // leave nothing half-built behind
    throw err;
  }
  return lab;
}

async function setUp(name: string, a: LabHost, b: LabHost, segmentOffload: boolean, owned: string[]): Promise<void> {
  for (const h of [a, b]) {
    await mustRun(['ip', 'netns', 'add', h.ns], `${ROOT_HINT}; if it exists, another run may have just created it`);
    owned.push(h.ns);
    // `ip netns add` fails if the name exists, so having created it is what makes the lab ours.
    if (owned.length === 1) claimLab(name);
  }
  // Create the pair directly inside the namespaces so it never appears in the
  // host namespace, even briefly.
  await mustRun(
    netnsExec(a.ns, ['ip', 'link', 'add', a.ifname, 'type', 'veth', 'peer', 'name', b.ifname, 'netns', b.ns]),
    'is the veth module available (modprobe veth)?',
  );
  for (const h of [a, b]) await steerToOneCpu(h);
  // Links go up before addresses are added: an IPv6 address added to a down
  // link joins its solicited-node multicast group only after a random delay
  // of up to 1 s (rtr_solicit_delay) once the link comes up, even with
  // nodad, and until then neighbour solicitations for it are ignored, which
  // stalls the first IPv6 connection by a 1 s retransmit. Added to an up link,
  // the join is immediate.
  for (const h of [a, b]) {
    // gso_max_segs 1 caps TCP's per-packet segment count (sk_gso_max_segs).
    const gso = segmentOffload ? [] : [`link set ${h.ifname} gso_max_segs 1`];
    await ipBatch(h, [...gso, `link set lo up`, `link set ${h.ifname} up`]);
  }
  for (const h of [a, b]) {
    // nodad makes the IPv6 address usable at once instead of after ~1-2 s of
    // duplicate address detection.
    await ipBatch(h, [`addr add ${h.addr4}/24 dev ${h.ifname}`, `addr add ${h.addr6}/64 dev ${h.ifname} nodad`]);
  }
}

/**
 * veth hands each packet to the backlog of the CPU that sent it, so when the
 * sender migrates between CPUs a flow's packets get reordered, and TCP answers
 * with spurious retransmits (dozens per MB, even with no loss at all). RPS
 * over all online CPUs hashes each flow to a single CPU, keeping it in order,
 * so retransmit counts in tests come from injected loss only.
 */
async function steerToOneCpu(h: LabHost): Promise<void> {
  const path = `/sys/class/net/${h.ifname}/queues/rx-0/rps_cpus`;
  await mustRun(netnsExec(h.ns, ['tee', path]), `cannot enable RPS on ${h.ifname} (kernel without CONFIG_RPS?)`, onlineCpuMask());
}

/** The online CPUs as a sysfs cpumask: hex, comma-separated 32-bit groups. */
function onlineCpuMask(): string {
  let mask = 0n;
  for (const range of readFileSync('/sys/devices/system/cpu/online', 'utf8').trim().split(',')) {
    const [lo, hi] = range.split('-').map(Number) as [number, number | undefined];
    for (let cpu = lo; cpu <= (hi ?? lo); cpu++) mask |= 1n << BigInt(cpu);
  }
  const groups: string[] = [];
  do {
    groups.unshift((mask & 0xffffffffn).toString(16).padStart(8, '0'));
    mask >>= 32n;
  } while (mask > 0n);
  return groups.join(',') + '\n';
}

/** Runs several `ip` commands in one process inside the namespace (`ip -b -`). */
async function ipBatch(h: LabHost, lines: string[]): Promise<void> {
  await mustRun(netnsExec(h.ns, ['ip', '-b', '-']), `configuring ${h.ns} failed; is IPv6 enabled?`, lines.join('\n') + '\n');
}

function makeLab(
  name: string,
  subnet: number,
  a: LabHost,
  b: LabHost,
  children: Set<ChildProcess>,
  owned: string[],
): Lab {
  const hostOf = (side: SideName): LabHost => {
    if (side !== 'a' && side !== 'b') throw new Error(`netns lab: side must be 'a' or 'b', got '${String(side)}'`);
    return side === 'a' ? a : b;
  };
  let destroyed = false;
  return {
    name,
    subnet,
    a,
    b,
    // async so that a bad side rejects like every other failure instead of throwing.
    dropRandom: async (side, percent) => dropRandom(hostOf(side), percent),
    clearDrops: async (side) => clearDrops(hostOf(side)),
    droppedPackets: async (side) => droppedPackets(hostOf(side)),
    transfer: async (opts) => {
      const from = opts.from ?? 'a';
      return transfer(hostOf(from), hostOf(from === 'a' ? 'b' : 'a'), opts);
    },
    destroy: async () => {
      if (destroyed) return;
      for (const c of children) c.kill('SIGKILL');
      // Processes keep a namespace alive after `ip netns del`, so delete only
      // after they are gone (deleteNetns also kills stragglers by pid).
      for (const ns of owned) await deleteNetns(ns);
      if (owned.length > 0) rmSync(ownerFile(name), { force: true });
      destroyed = true;
    },
  };
}

// ---------------------------------------------------------------------------
// Packet loss (nftables)

async function dropRandom(h: LabHost, percent: number): Promise<void> {
  if (!Number.isFinite(percent) || percent < 0 || percent > 100) {
    throw new Error(`netns lab: drop percent must be within 0..100, got ${percent}`);
  }
  // numgen draws 0..9999 per packet, so percents with two decimals are exact.
  const threshold = Math.round(percent * 100);
  // nft rejects "< 10000" (beyond the 0..9999 range), so 100 % drops unconditionally.
  const sample = threshold >= 10000 ? '' : `numgen random mod 10000 < ${threshold} `;
  // Declaring then deleting the table makes the script replace any earlier
  // rule atomically, whether or not one exists. Priority raw (-300) runs
  // before conntrack, so a dropped packet never reaches conntrack or TCP, as
  // with loss on the wire (IpInReceives still counts it).
  const script = `
table inet ${NFT_TABLE} {}
delete table inet ${NFT_TABLE}
table inet ${NFT_TABLE} {
  chain drop_in {
    type filter hook prerouting priority raw; policy accept;
    iifname "${h.ifname}" meta l4proto tcp ${sample}counter drop
  }
}
`;
  await mustRun(netnsExec(h.ns, ['nft', '-f', '-']), 'is nftables installed (apt-get install -y nftables) and nf_tables loadable?', script);
}

async function clearDrops(h: LabHost): Promise<void> {
  const r = await h.exec(['nft', 'delete', 'table', 'inet', NFT_TABLE]);
  // "No such file or directory" just means there was nothing to clear.
  if (r.code !== 0 && !/No such file or directory/.test(r.stderr)) {
    throw new Error(`netns lab: removing the drop rule in ${h.ns} failed (${describeFailure(r)})`);
  }
}

async function droppedPackets(h: LabHost): Promise<number> {
  const r = await h.exec(['nft', 'list', 'table', 'inet', NFT_TABLE]);
  if (r.code !== 0) return 0;
  const m = /counter packets (\d+)/.exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

// ---------------------------------------------------------------------------
// Bulk transfer with plain node (no extra packages inside the namespaces)

// Accepts one connection, counts bytes until the peer's FIN, closes, reports.
// Messages are JSON lines on stdout.
const SERVER_JS = `
const net = require('node:net');
const [host, port] = process.argv.slice(1);
let received = 0;
const say = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const srv = net.createServer((sock) => {
  srv.close();
  const remotePort = sock.remotePort;
  sock.on('data', (d) => { received += d.length; });
  sock.on('end', () => sock.end());
  sock.on('close', () => say({ event: 'done', received, remotePort }));
  sock.on('error', (e) => { console.error('server socket: ' + e.message); process.exit(2); });
});
srv.on('error', (e) => { console.error('server: ' + e.message); process.exit(2); });
srv.listen(Number(port), host, () => say({ event: 'listening', port: srv.address().port }));
`;

// Connects, writes N bytes honouring backpressure, sends FIN, waits for the
// server's FIN so the connection closes normally on both sides.
const CLIENT_JS = `
const net = require('node:net');
const [host, port, total] = process.argv.slice(1).map((v, i) => i === 0 ? v : Number(v));
const say = (m) => process.stdout.write(JSON.stringify(m) + '\\n');
const buf = Buffer.alloc(64 * 1024, 0x5a);
let sent = 0;
const sock = net.connect({ host, port });
sock.on('connect', () => {
  say({ event: 'connected', localAddr: sock.localAddress, localPort: sock.localPort });
  pump();
});
function pump() {
  while (sent < total) {
    const n = Math.min(buf.length, total - sent);
    sent += n;
    if (!sock.write(n === buf.length ? buf : buf.subarray(0, n))) { sock.once('drain', pump); return; }
  }
  sock.end();
}
sock.on('data', () => {});
sock.on('close', () => say({ event: 'done', sent }));
sock.on('error', (e) => { console.error('client: ' + e.message); process.exit(2); });
`;

interface NodeProc {
  child: ChildProcess;
  /** Resolves with the first JSON message whose event matches. */
  message(event: string): Promise<Record<string, unknown>>;
  exited: Promise<void>;
}

/** Starts `node -e script args` in the namespace, parsing its JSON-line stdout. */
function startNode(h: LabHost, role: string, script: string, args: string[]): NodeProc {
  const child = h.spawn([process.execPath, '-e', script, ...args]);
  const seen: Record<string, unknown>[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => (stderr += s));
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      seen.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      return; // not ours
    }
    waiters.splice(0).forEach((w) => w());
  });
  // Set on 'close', which comes after stdout is drained, so by then every
  // message the process wrote has been seen.
  let closed: Error | null | undefined;
  const exited = new Promise<void>((resolve, reject) => {
    const finish = (err: Error | null) => {
      if (closed !== undefined) return;
      closed = err;
      waiters.splice(0).forEach((w) => w());
      if (err) reject(err);
      else resolve();
    };
    child.on('error', (err) => finish(new Error(`netns lab: transfer ${role} in ${h.ns} could not start: ${err.message}`)));
    child.on('close', (code, signal) =>
      finish(
        code === 0
          ? null
          : new Error(`netns lab: transfer ${role} in ${h.ns} failed (${describeFailure({ code, signal, stdout: '', stderr })})`),
      ),
    );
  });
  exited.catch(() => {}); // observed via message()/await exited; avoid unhandled rejection noise
  const message = (event: string) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const m = seen.find((x) => x['event'] === event);
        if (m) resolve(m);
        else if (closed !== undefined) reject(closed ?? new Error(`netns lab: transfer ${role} in ${h.ns} exited without '${event}'`));
        else waiters.push(check);
      };
      check();
    });
  return { child, message, exited };
}

async function transfer(client: LabHost, server: LabHost, opts: TransferOptions): Promise<TransferResult> {
  const family = opts.family ?? 4;
  if (family !== 4 && family !== 6) throw new Error(`netns lab: family must be 4 or 6, got ${String(family)}`);
  if (!Number.isSafeInteger(opts.bytes) || opts.bytes < 0) throw new Error(`netns lab: bytes must be a non-negative integer`);
  const serverAddr = family === 4 ? server.addr4 : server.addr6;
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const started = Date.now();

  const srv = startNode(server, 'server', SERVER_JS, [serverAddr, String(opts.port ?? 0)]);
  let cli: NodeProc | undefined;
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      srv.child.kill('SIGKILL');
      cli?.child.kill('SIGKILL');
      reject(new Error(`netns lab: transfer of ${opts.bytes} bytes ${client.ns} -> ${server.ns} took over ${timeoutMs} ms; raise timeoutMs or lower the drop rate`));
    }, timeoutMs);
  });
  timeout.catch(() => {});

  try {
    const go = async (): Promise<TransferResult> => {
      const serverPort = Number((await srv.message('listening'))['port']);
      cli = startNode(client, 'client', CLIENT_JS, [serverAddr, String(serverPort), String(opts.bytes)]);
      const conn = await cli.message('connected');
      const [cliDone, srvDone] = await Promise.all([cli.message('done'), srv.message('done'), cli.exited, srv.exited]);
      // Both ends must have seen the same connection, or port matching in tests would mislead.
      if (Number(srvDone['remotePort']) !== Number(conn['localPort'])) {
        throw new Error(`netns lab: server saw client port ${String(srvDone['remotePort'])}, client reported ${String(conn['localPort'])}`);
      }
      return {
        family,
        clientAddr: String(conn['localAddr']),
        clientPort: Number(conn['localPort']),
        serverAddr,
        serverPort,
        bytesSent: Number(cliDone['sent']),
        bytesReceived: Number(srvDone['received']),
        durationMs: Date.now() - started,
      };
    };
    return await Promise.race([go(), timeout]);
  } catch (err) {
    srv.child.kill('SIGKILL');
    cli?.child.kill('SIGKILL');
    throw err;
  } finally {
    clearTimeout(timer);
  }
}
