#!/usr/bin/env node
/**
 * Benchmark: console log → verdicts. Builds a 5 MB serial console log of kernel-style noise with one
 * framed bundle (a fixture, framed twice like the collector does) in the middle, then times
 * extractBundleFromConsole + runProbes over it. Needs the compiled code: `npm run build` first.
 *
 *   node bench/verify-console.mjs [--mb 5] [--runs 7] [--fixture 13.2-healthy-derived] [--noise dmesg|frames]
 * --noise frames: the worst case, a log made of frames of other runs (every line is a frame line).
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 && args[i + 1] ? args[i + 1] : def;
};
const mb = Number(opt('mb', '5'));
const runs = Number(opt('runs', '7'));
const fixture = opt('fixture', '13.2-healthy-derived');
const noise = opt('noise', 'dmesg');

const verify = await import(join(root, 'dist/core/verify/index.js'));
const bundle = await verify.readBundle(join(root, 'fixtures/probes', fixture));
const run = 'bench-run-1';
bundle.meta.run = run;
const frame = verify.encodeConsoleFrame(await verify.packBundle(bundle), run, 'boot');

// Kernel-style noise: a real dmesg.boot replayed with varying numbers, CRLF line ends like a serial log.
const realDmesg = readFileSync(join(root, 'fixtures/freebsd/11.1-xl-xen4.8-hvm-dmesg-boot.txt'), 'utf8')
  .split('\n')
  .filter((l) => l && !l.startsWith('#'));
const otherFrame = verify.encodeConsoleFrame(await verify.packBundle(bundle), 'other-run', 'boot').replace(/\n/g, '\r\n');
const target = mb * 1024 * 1024;
const parts = [];
let size = 0;
let n = 0;
let placed = false;
while (size < target) {
  const line = noise === 'frames' ? otherFrame.replace(/other-run/g, `other-${n}`) : `${realDmesg[n % realDmesg.length]} [${n}]\r\n`;
  parts.push(line);
  size += line.length;
  n++;
  if (!placed && size >= target / 2) {
    parts.push(frame.replace(/\n/g, '\r\n'));
    size += frame.length;
    placed = true;
  }
}
const log = parts.join('');

const times = [];
let verdicts;
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  const got = await verify.extractBundleFromConsole(log, { run });
  if (got.status !== 'complete') throw new Error(`frame not found: ${got.status}`);
  const report = verify.runProbes(got.bundle);
  times.push(performance.now() - t0);
  verdicts = report.results.map((r) => `${r.id}=${r.verdict}`).join(' ');
}
times.sort((a, b) => a - b);
const median = times[Math.floor(times.length / 2)];
process.stdout.write(
  `${JSON.stringify({
    bench: 'verify-console',
    noise,
    logBytes: log.length,
    logLines: log.split("\n").length - 1,
    frameLines: frame.split('\n').length - 1,
    runs,
    medianMs: Number(median.toFixed(1)),
    minMs: Number(times[0].toFixed(1)),
    maxMs: Number(times.at(-1).toFixed(1)),
    mbPerSecond: Number((log.length / 1024 / 1024 / (median / 1000)).toFixed(1)),
    node: process.version,
    verdicts,
  })}\n`,
);
