// Checks the test lab itself: two namespaces that talk TCP, loss injection
// that only affects the lab, and clean teardown. Needs root.

import assert from 'node:assert/strict';
import { existsSync, statSync } from 'node:fs';
import { createLab, destroyStaleLabs, hostNstat, type Lab } from './support/netns-lab';

const LAB = 'tsplab';

function delta(after: Record<string, number>, before: Record<string, number>, key: string): number {
  const a = after[key];
  const b = before[key];
  assert.ok(a !== undefined && b !== undefined, `counter ${key} missing`);
  return a - b;
}

describe('netns lab', function () {
  this.timeout(60_000);
  let lab: Lab | undefined;

  before(async function () {
    if (process.getuid?.() !== 0) this.skip(); // namespaces need root
    await destroyStaleLabs(LAB);
    lab = await createLab(LAB);
  });

  after(async () => {
    await lab?.destroy();
  });

  it('should create two namespaces distinct from the host and from each other', async () => {
    const { a, b } = lab!;
    const host = statSync('/proc/self/ns/net').ino;
    assert.notEqual(a.netnsInode(), b.netnsInode());
    assert.notEqual(a.netnsInode(), host);
    assert.notEqual(b.netnsInode(), host);
    // The inode must be the one processes inside the namespace see (and eBPF reports).
    const inside = await a.exec(['readlink', '/proc/self/ns/net'], { check: true });
    assert.equal(inside.stdout.trim(), `net:[${a.netnsInode()}]`);
  });

  it('should carry a TCP connection from a to b over IPv4', async () => {
    const r = await lab!.transfer({ bytes: 100_000, family: 4 });
    assert.equal(r.bytesReceived, 100_000);
    assert.equal(r.clientAddr, lab!.a.addr4);
    assert.ok(r.clientPort > 0 && r.serverPort > 0);
  });

  it('should carry a TCP connection from a to b over IPv6 right after creation', async () => {
    const r = await lab!.transfer({ bytes: 100_000, family: 6 });
    assert.equal(r.bytesReceived, 100_000);
    assert.equal(r.clientAddr, lab!.a.addr6);
  });

  it('should report absolute counters, not deltas since the last read', async () => {
    const first = await lab!.a.nstat();
    const second = await lab!.a.nstat();
    // Two transfers above opened connections from a; a delta reader would show 0 the second time.
    assert.ok((second['TcpActiveOpens'] ?? 0) >= 2, `TcpActiveOpens=${second['TcpActiveOpens']}`);
    assert.equal(second['TcpActiveOpens'], first['TcpActiveOpens']);
    assert.ok('TcpExtTCPSynRetrans' in second && 'TcpRetransSegs' in second);
  });

  it('should not retransmit at all without injected loss', async () => {
    // The lab steers each flow to one CPU; without that, veth reorders packets
    // and TCP retransmits spuriously, which would blur every loss assertion.
    const a0 = await lab!.a.nstat();
    await lab!.transfer({ bytes: 4 * 1024 * 1024 });
    const a1 = await lab!.a.nstat();
    // Reordering retransmitted dozens of segments per MB; a loaded machine that delays an ACK past
    // the loss-probe timer may still retransmit a few of the ≈ 2,900 segments, which is not that.
    const retrans = delta(a1, a0, 'TcpRetransSegs');
    assert.ok(retrans <= 4, `${retrans} segments retransmitted (${delta(a1, a0, 'TcpExtTCPLossProbes')} loss probes, ` +
      `${delta(a1, a0, 'TcpExtTCPTimeouts')} RTOs)`);
  });

  it('should make the sender retransmit when b drops 10% of incoming TCP, without touching the host', async () => {
    const bytes = 2 * 1024 * 1024;
    const host0 = hostNstat();
    const a0 = await lab!.a.nstat();
    const b0 = await lab!.b.nstat();
    await lab!.dropRandom('b', 10);
    const r = await lab!.transfer({ bytes, family: 4, timeoutMs: 30_000 });
    const dropped = await lab!.droppedPackets('b');
    await lab!.clearDrops('b');
    const a1 = await lab!.a.nstat();
    const b1 = await lab!.b.nstat();
    const host1 = hostNstat();

    assert.equal(r.bytesReceived, bytes);
    assert.ok(dropped > 0, 'the nft rule dropped nothing');
    const retrans = delta(a1, a0, 'TcpRetransSegs');
    assert.ok(retrans > 0, `sender retransmitted nothing despite ${dropped} drops`);
    // The host may carry unrelated traffic, so compare rather than demand zero:
    // the lab's segments and retransmits must not show up in the host's counters.
    const hostRetrans = delta(host1, host0, 'TcpRetransSegs');
    assert.ok(hostRetrans < retrans, `host TcpRetransSegs +${hostRetrans} vs lab +${retrans}`);
    const labIn = delta(b1, b0, 'TcpInSegs');
    const hostIn = delta(host1, host0, 'TcpInSegs');
    assert.ok(hostIn < labIn, `host TcpInSegs +${hostIn} vs lab +${labIn}`);
    console.log(
      `      ${bytes} B at 10% drop: ${dropped} packets dropped, ${retrans} segments retransmitted, ` +
        `${delta(a1, a0, 'TcpExtTCPTimeouts')} RTOs, ${r.durationMs} ms`,
    );
  });

  it('should remove the drop rule with clearDrops', async () => {
    assert.equal(await lab!.droppedPackets('b'), 0);
    const rules = await lab!.b.exec(['nft', 'list', 'ruleset'], { check: true });
    assert.doesNotMatch(rules.stdout, /numgen/);
    await lab!.clearDrops('b'); // clearing twice is harmless
  });

  it('should delete both namespaces on destroy, and tolerate a second destroy', async () => {
    const { a, b } = lab!;
    await lab!.destroy();
    assert.equal(existsSync(`/run/netns/${a.ns}`), false);
    assert.equal(existsSync(`/run/netns/${b.ns}`), false);
    await lab!.destroy();
  });
});
