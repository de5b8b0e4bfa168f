// Integration: retransmits between two network namespaces with nftables loss,
// counted against the kernel's own TcpRetransSegs.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { startCaptureSession, type CaptureSession } from './support/capture-session.js';
import { createLab, destroyStaleLabs, type Lab } from './support/netns-lab.js';
import { EventKind } from '../src/decode/event.js';
import type { CapturedEvent } from './support/capture-session.js';

describe('retransmits', function () {
  this.timeout(60_000);
  let lab: Lab;
  let session: CaptureSession | undefined;

  before(async () => {
    await destroyStaleLabs('tspr');
    lab = await createLab('tspr');
  });

  after(async () => {
    await session?.stop();
    await lab?.destroy();
  });

  it('should report every retransmitted segment, matching each namespace TcpRetransSegs', async () => {
    const port = 41000 + (process.pid % 1000);
    session = await startCaptureSession({ ports: [port] });
    const before = { a: await lab.a.nstat(), b: await lab.b.nstat() };
    await lab.dropRandom('b', 10);
    const t = await lab.transfer({ bytes: 4 << 20, port, from: 'a' });
    await lab.clearDrops('b');
    await session.waitFor((evs) => evs.filter((e) => e.kind === EventKind.Close).length >= 2, 10_000, 'both ends to close');
    const after = { a: await lab.a.nstat(), b: await lab.b.nstat() };
    // a program nested in itself on one CPU (softirq over process context) is skipped by the kernel
    const misses = (JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' })) as { name?: string; recursion_misses?: number }[])
      .filter((p) => p.name?.startsWith('handle_') && p.recursion_misses).map((p) => `${p.name}: ${p.recursion_misses}`);
    const counters = await session.stop();
    assert.equal(t.bytesReceived, 4 << 20);
    assert.equal(counters.ringbufFull, 0);
    assert.equal(counters.submitted, session.events.length);

    for (const side of ['a', 'b'] as const) {
      const netns = lab[side].netnsInode();
      const mine: CapturedEvent[] = session.events.filter((e) => e.netns === netns);
      // a retransmit the kernel counted is one that was sent (err 0); -EBUSY and the like were not
      const seen: number = mine.filter((e) => (e.kind === EventKind.Retransmit && e.error === 0) || e.kind === EventKind.SynAckRetransmit)
        .reduce((sum, e) => sum + e.segs, 0);
      const byError = JSON.stringify(mine.filter((e) => e.kind === EventKind.Retransmit)
        .reduce((m: Record<string, number>, e) => { m[e.error] = (m[e.error] ?? 0) + e.segs; return m; }, {}));
      const kernel = after[side]['TcpRetransSegs']! - before[side]['TcpRetransSegs']!;
      assert.equal(seen, kernel, `namespace ${side}: events ${seen} (segments by transmit result ${byError}), TcpRetransSegs delta ${kernel}; ` +
        `recursion misses: ${misses.join(', ') || 'none'}; TcpExtTCPRetransFail +${(after[side]['TcpExtTCPRetransFail'] ?? 0) - (before[side]['TcpExtTCPRetransFail'] ?? 0)}`);
      if (side === 'a') assert.ok(kernel > 10, `the sender retransmitted (${kernel})`);
      // the lives' own counts (kept in the kernel, exact even if records were lost) agree too
      const counted = mine.filter((e) => e.kind === EventKind.Close).reduce((sum, e) => sum + e.retransSegs, 0) +
        mine.filter((e) => e.kind === EventKind.SynAckRetransmit).reduce((sum, e) => sum + e.segs, 0);
      assert.equal(counted, kernel, `namespace ${side}: Close records count ${counted}, TcpRetransSegs delta ${kernel}`);
    }
    // every retransmit event is attributed to a tracked connection of this transfer
    const retrans = session.events.filter((e) => e.kind === EventKind.Retransmit);
    assert.deepEqual(retrans.filter((e) => e.cookie === 0 || (e.lport !== t.clientPort && e.lport !== t.serverPort)), []);
  });
});
