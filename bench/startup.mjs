#!/usr/bin/env node
// Start-up cost: `node dist/cli.js --help` and `node dist/cli.js build --help` next to `node -e 0`, in
// the same run. Rounds are interleaved (each round runs the three once, in a rotating order), so a
// change in the machine's load hits all of them alike; the median over the rounds is reported for wall
// time (spawn to exit, seen from here) and CPU time (user + system of the child, read by the child itself
// at exit through a one-line preload that all three carry, so it costs them alike).
//
// usage: npm run build && node bench/startup.mjs [--rounds 31] [--cli dist/cli.js]
//   Prints a Markdown table for docs/performance.md and writes the raw samples to bench/.work/startup.json.
import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const ROUNDS = Number(opt('--rounds', '31'));
const ROOT = resolve(new URL('..', import.meta.url).pathname);
const CLI = resolve(opt('--cli', join(ROOT, 'dist/cli.js')));

// The child writes its own rusage (µs) on fd 3 as it exits: finer than GNU time's 10 ms.
const PRELOAD = `data:text/javascript,${encodeURIComponent('import { writeSync } from "node:fs"; process.on("exit", () => { const u = process.cpuUsage(); writeSync(3, `${u.user + u.system}\\n`); });')}`;

const cases = [
  { name: 'node -e 0', argv: ['-e', '0'] },
  { name: 'fbxen --help', argv: [CLI, '--help'] },
  { name: 'fbxen build --help', argv: [CLI, 'build', '--help'] },
];

function once(c) {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['--import', PRELOAD, ...c.argv], { stdio: ['ignore', 'ignore', 'pipe', 'pipe'], encoding: 'utf8' });
  const wallMs = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${c.name} exited ${r.status}: ${r.stderr}`);
  const cpuMs = Number(r.output[3].trim()) / 1000;
  return { wallMs, cpuMs };
}

const samples = Object.fromEntries(cases.map((c) => [c.name, []]));
for (const c of cases) once(c); // warm the page cache; not counted
for (let round = 0; round < ROUNDS; round++) {
  for (let i = 0; i < cases.length; i++) {
    const c = cases[(round + i) % cases.length];
    samples[c.name].push(once(c));
  }
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const base = { wall: median(samples['node -e 0'].map((s) => s.wallMs)), cpu: median(samples['node -e 0'].map((s) => s.cpuMs)) };
const rows = cases.map((c) => {
  const wall = median(samples[c.name].map((s) => s.wallMs));
  const cpu = median(samples[c.name].map((s) => s.cpuMs));
  return { name: c.name, wall, cpu, wallX: wall / base.wall, cpuX: cpu / base.cpu };
});

mkdirSync(join(ROOT, 'bench/.work'), { recursive: true });
writeFileSync(join(ROOT, 'bench/.work/startup.json'), `${JSON.stringify({ node: process.version, rounds: ROUNDS, cli: CLI, samples, rows }, null, 2)}\n`);
console.log(`node ${process.version}, ${ROUNDS} interleaved rounds, medians\n`);
console.log('| command | wall ms | x node -e 0 | CPU ms | x node -e 0 |');
console.log('|---|---:|---:|---:|---:|');
for (const r of rows) console.log(`| \`${r.name}\` | ${r.wall.toFixed(1)} | ${r.wallX.toFixed(2)} | ${r.cpu.toFixed(1)} | ${r.cpuX.toFixed(2)} |`);
