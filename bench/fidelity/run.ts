// npm run fidelity: every way a connection lives and dies, in a two-namespace lab, traced by
// `tcpspan run` and compared with what the kernel itself counted. Prints one row per check
// (scenario, what, expected, observed, match), writes the same table as Markdown for the
// README, and exits 1 on any mismatch.
//
//   npm run fidelity -- [--only SUBSTRING,...] [--markdown FILE]
import { mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { createLab, destroyStaleLabs, type Lab } from '../../test/support/netns-lab.js';
import { killLeftovers, startAgent, type Check } from './harness.js';
import { SCENARIOS } from './scenarios.js';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const LAB_PREFIX = 'fid';
const SCENARIO_TIMEOUT_MS = 90_000;

interface Row extends Check { scenario: string }

const progress = (m: string): void => { process.stderr.write(`fidelity: ${m}\n`); };

function aligned(rows: Row[]): string {
  const head = ['scenario', 'check', 'expected', 'observed', 'match'];
  const cells = rows.map((r, i) => [i > 0 && rows[i - 1]!.scenario === r.scenario ? '' : r.scenario, r.what, r.expected, r.observed, r.ok ? '✓' : '✗']);
  const w = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) => c.map((x, i) => x.padEnd(w[i]!)).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...cells.map(line)].join('\n');
}

function markdown(rows: Row[]): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  return ['| scenario | check | expected | observed | match |', '|---|---|---|---|---|',
    ...rows.map((r, i) => `| ${i > 0 && rows[i - 1]!.scenario === r.scenario ? '' : esc(r.scenario)} | ${esc(r.what)} | ${esc(r.expected)} | ${esc(r.observed)} | ${r.ok ? '✓' : '✗'} |`)].join('\n');
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    args: process.argv.slice(2), strict: true,
    options: { only: { type: 'string' }, markdown: { type: 'string' }, help: { type: 'boolean', default: false } },
  });
  if (values.help) {
    process.stdout.write('usage: npm run fidelity -- [--only SUBSTRING,...] [--markdown FILE]   (root; scripts/fidelity sets up first)\n' +
      `scenarios:\n${SCENARIOS.map((s) => `  ${s.name}`).join('\n')}\n`);
    return 0;
  }
  const only = values.only?.split(',').map((s) => s.trim().toLowerCase()).filter(Boolean);
  const chosen = SCENARIOS.filter((s) => !only || only.some((o) => s.name.toLowerCase().includes(o)));
  if (chosen.length === 0) throw new Error(`--only ${values.only}: no scenario matches`);
  await destroyStaleLabs(LAB_PREFIX);
  const started = Date.now();
  const rows: Row[] = [];
  for (const [i, scenario] of chosen.entries()) {
    progress(`${scenario.name}`);
    const t0 = Date.now();
    let lab: Lab | undefined;
    try {
      lab = await createLab(`${LAB_PREFIX}${process.pid % 1000}-${i}`);
      const [a, b] = await Promise.all([startAgent(lab.a), startAgent(lab.b)]);
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`took over ${SCENARIO_TIMEOUT_MS / 1000} s`)), SCENARIO_TIMEOUT_MS);
      });
      const checks = await Promise.race([scenario.run({ lab, a, b }), timeout]).finally(() => clearTimeout(timer));
      for (const c of checks) rows.push({ scenario: scenario.name, ...c });
    } catch (err) {
      rows.push({ scenario: scenario.name, what: 'run', expected: 'completes', observed: `failed: ${(err as Error).message.split('\n')[0]}`, ok: false });
    } finally {
      await killLeftovers();
      await lab?.destroy();
    }
    const bad = rows.filter((r) => r.scenario === scenario.name && !r.ok).length;
    progress(`  ${((Date.now() - t0) / 1000).toFixed(1)} s${bad ? `, ${bad} mismatch(es)` : ''}`);
  }
  const failed = rows.filter((r) => !r.ok);
  const header = `tcpspan fidelity, ${new Date(started).toISOString()}: kernel ${os.release()}, ${os.cpus().length} CPUs, ` +
    `${((Date.now() - started) / 1000).toFixed(0)} s; ${chosen.length} scenarios, ${rows.length} checks, ${failed.length} mismatch(es)`;
  console.log(`\n${header}\n\n${aligned(rows)}\n`);
  const md = `${header}\n\n${markdown(rows)}\n`;
  const file = values.markdown ?? path.join(ROOT, 'dist', 'bench', 'fidelity.md');
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, md);
  console.log(`Markdown: ${path.relative(process.cwd(), file) || file}`);
  return failed.length ? 1 : 0;
}

main().then((code) => { process.exitCode = code; }, (err: unknown) => {
  console.error(`fidelity: ${(err as Error).stack ?? String(err)}`);
  process.exitCode = 2;
});
