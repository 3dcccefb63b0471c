#!/usr/bin/env node
/**
 * Benchmark: console log → verdicts. Builds a 5 MB serial console log of kernel-style noise with one
 * framed bundle (a fixture, framed twice like the collector does) in the middle, then times
 * extractBundleFromConsole + runProbes over it. Needs the compiled code: `npm run build` first.
 *
 *   node bench/verify-console.mjs [--mb 5] [--runs 7] [--fixture 13.2-healthy-derived] [--noise dmesg|frames]
 * --noise frames: the worst case, a log made of frames of other runs (every line is a frame line).
 *
 *   node bench/verify-console.mjs --hostile [--counts 25000,50000,100000,200000] [--bomb-mb 250] [--dist DIR]
 * --hostile: what a hostile guest can print (issue 14): N BEGIN headers of the run, each a different
 * frame; a gzip bomb inside a valid frame; the header claiming 999,999,999 lines. Each log is written
 * to a file and read by `fbxen verify`'s reader in a child process, timed with /usr/bin/time (elapsed,
 * peak RSS) next to `wc -l` and `grep -c FBXEN1` over the same file in the same run.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import * as zlib from 'node:zlib';

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

// --dist DIR: another compiled tree (e.g. an older fbxen, to compare in the same run).
const dist = opt('dist', join(root, 'dist'));
const verify = await import(join(dist, 'core/verify/index.js'));

// Child mode: read one log file with the reader, print what it found.
if (args.includes('--case')) {
  const t0 = performance.now();
  const text = readFileSync(opt('case'), 'latin1');
  const got = await verify.extractBundleFromConsole(text, { run: opt('run', 'r1') });
  const readerMs = Number((performance.now() - t0).toFixed(1));
  process.stdout.write(`${JSON.stringify({ readerMs, status: got.status, ...(got.status === 'rejected' ? { reason: got.reason } : {}), ...(got.status === 'incomplete' ? { missing: got.missingLines, total: got.totalLines } : {}) })}\n`);
  process.exit(0);
}

if (args.includes('--hostile')) {
  const dir = mkdtempSync(join(tmpdir(), 'fbxen-bench-hostile-'));
  const run = (file, label) => {
    const row = { case: label, logBytes: readFileSync(file).length };
    for (const [name, cmd, cmdArgs] of [
      ['wc', 'wc', ['-l', file]],
      ['grep', 'grep', ['-c', 'FBXEN1', file]],
      ['fbxen', process.execPath, [fileURLToPath(import.meta.url), '--case', file, '--run', 'r1', '--dist', dist]],
    ]) {
      const res = spawnTimed(cmd, cmdArgs);
      row[`${name}S`] = res.seconds;
      row[`${name}RssMB`] = res.rssMB;
      if (name === 'fbxen') {
        try {
          Object.assign(row, JSON.parse(res.stdout));
        } catch {
          row.status = `crashed (${res.exit})`;
        }
      }
    }
    process.stdout.write(`${JSON.stringify(row)}\n`);
  };
  function spawnTimed(cmd, cmdArgs) {
    const r = spawnSync('/usr/bin/time', ['-f', '%e %M', cmd, ...cmdArgs], { encoding: 'utf8', maxBuffer: 1 << 26 });
    const last = r.stderr.trim().split('\n').at(-1) ?? '';
    const [sec, kb] = last.split(' ').map(Number);
    if (!Number.isFinite(sec)) throw new Error(`${cmd} failed: ${r.stderr}`);
    const signal = /terminated by signal (\d+)/.exec(r.stderr)?.[1];
    return { seconds: sec, rssMB: Math.round(kb / 1024), stdout: r.stdout, exit: signal ? `signal ${signal}` : `exit ${r.status}` };
  }
  try {
    // Node's own start-up and the import of fbxen's verify code, for scale: an empty log.
    const empty = join(dir, 'empty.log');
    writeFileSync(empty, '');
    run(empty, 'empty log (node start-up and import)');
    const counts = opt('counts', '25000,50000,100000,200000').split(',').map(Number);
    for (const n of counts) {
      const lines = [];
      for (let k = 0; k < n; k++) lines.push(`FBXEN1 BEGIN r1 boot 3 ${createHash('sha256').update(String(k)).digest('hex')}\r\n`);
      const file = join(dir, `begin-${n}.log`);
      writeFileSync(file, lines.join(''));
      run(file, `${n} BEGIN lines of the run`);
    }
    // A valid frame (its sha256 matches) around gzip(tar) of a bundle with one section of zeros.
    const bombMb = Number(opt('bomb-mb', '250'));
    const meta = Buffer.from('bundle=fbxen-bundle/1\nrun=r1\nphase=boot\n');
    // The bomb is built with the current build's tar header writer (packBundle's), whatever --dist reads it.
    const { ustarHeader } = await import(join(root, 'dist/core/verify/bundle.js'));
    const header = (name, size) => ustarHeader(name, size, '0');
    const gz = zlib.createGzip({ level: 9 });
    const parts = [];
    gz.on('data', (c) => parts.push(c));
    const done = new Promise((res) => gz.on('end', res));
    gz.write(header('meta', meta.length));
    gz.write(Buffer.concat([meta, Buffer.alloc(512 - meta.length)]));
    const big = bombMb * 1024 * 1024;
    gz.write(header('sections/dmesg.out', big));
    const zeros = Buffer.alloc(1024 * 1024);
    for (let k = 0; k < bombMb; k++) if (!gz.write(zeros)) await new Promise((res) => gz.once('drain', res));
    gz.end(Buffer.alloc(1024));
    await done;
    const bombFile = join(dir, 'bomb.log');
    writeFileSync(bombFile, verify.encodeConsoleFrame(Buffer.concat(parts), 'r1', 'boot').replace(/\n/g, '\r\n'));
    run(bombFile, `gzip bomb: a ${bombMb} MB section in a valid frame`);
    const lineFile = join(dir, 'claim.log');
    writeFileSync(lineFile, `login: \r\nFBXEN1 BEGIN r1 boot 999999999 ${'ab'.repeat(32)}\r\n`);
    run(lineFile, 'one header claiming 999,999,999 lines');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  process.exit(0);
}
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
