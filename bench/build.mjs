#!/usr/bin/env node
// fbxen build next to the bare pipeline of the same tools doing the same job, and next to the floor
// (xz -dc base.txz > /dev/null), in the same run, on a ~1 GB FreeBSD-shaped sample (generated, never
// committed). The measurements are interleaved: each round runs every one of them once, so a change
// in the machine's load hits all of them alike. The median over the rounds is reported with wall time
// and peak RSS (GNU time). Results: a JSON file in bench/.work and a Markdown table on stdout for
// docs/performance.md.
//
// usage: node bench/build.mjs [--runs 3] [--dist DIR]
//   The sample: python3 test/sample/make-sample.py bench/.work/dist-1g --payload-mb 850 --kernel-payload-mb 250 --xz-level 3
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const args = process.argv.slice(2);
const opt = (name, dflt) => (args.includes(name) ? args[args.indexOf(name) + 1] : dflt);
const RUNS = Number(opt('--runs', '3'));
const ROOT = resolve(new URL('..', import.meta.url).pathname);
const WORK = join(ROOT, 'bench/.work');
const DIST = resolve(opt('--dist', join(WORK, 'dist-1g')));
if (!existsSync(join(DIST, 'MANIFEST'))) {
  console.error(`no sample at ${DIST}: python3 test/sample/make-sample.py ${DIST} --payload-mb 850 --kernel-payload-mb 250 --xz-level 3`);
  process.exit(2);
}
const CLI = join(ROOT, 'dist/cli.js');
const SCRATCH = join(WORK, 'scratch');
const has7zz = spawnSync('sh', ['-c', 'command -v 7zz'], { encoding: 'utf8' }).status === 0;

/** Runs a shell command under GNU time; returns wall seconds and peak RSS (MB) of the largest process. */
function timed(label, script) {
  execFileSync('sync');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', 'bash', '-c', `set -eo pipefail; ${script}`], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  const [wall, rssKb] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
  return { wall, rssMB: rssKb / 1024, stdout: r.stdout };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const fresh = (...dirs) => () => {
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
  }
};
const base = join(DIST, 'base.txz');
const kernel = join(DIST, 'kernel.txz');
const DISK = '4G';
const fbOut = join(SCRATCH, 'fbxen');
const cache = join(SCRATCH, 'cache');
const fbxenBuild = (extra) => `CI=true node ${CLI} build --quiet --json --dist ${DIST} --out ${fbOut} --disk-size ${DISK} --swap 1G ${extra} > ${fbOut}/result.json`;
const lastRecord = () => JSON.parse(readFileSync(join(fbOut, 'build.json'), 'utf8'));

// The bare pipeline (imaging.md §1.3): extract to a staging tree with an mtree spec from the same stream,
// makefs (Debian's, with the geometry that avoids its lazy-inode bug), GPT with sgdisk + dd, qemu-img.
const stage = join(SCRATCH, 'stage');
const bare = join(SCRATCH, 'bare');
const unstage = () => {
  if (existsSync(stage)) execFileSync('chmod', ['-R', 'u+w', stage]);
  fresh(stage, bare)();
};
// The mtree spec comes from the same stream through a FIFO, so the shell can wait for its writer.
const extract = (set) => {
  const name = `${bare}/$(basename ${set})`;
  return `(mkfifo ${name}.fifo; bsdtar -cf ${name}.mtree.raw --format=mtree --options='!all,type,uname,gname,uid,gid,mode,flags,link,time' @${name}.fifo & xz -dc ${set} | tee ${name}.fifo | bsdtar -xf - -C ${stage} --no-same-owner --no-same-permissions --no-fflags --no-xattrs --no-acls; wait)`;
};
let fsSizeMiB = 0;
const bareStages = () => ({
  extract: `${extract(base)} & ${extract(kernel)}; wait`,
  spec: `sed 's|^/\\. |. |' ${bare}/base.txz.mtree.raw ${bare}/kernel.txz.mtree.raw | awk '/^#/{if(!h++)print;next} !seen[$1]++' > ${bare}/rootfs.mtree`,
  makefs: `setarch x86_64 -R makefs -t ffs -B little -o version=2,bsize=65536,fsize=8192,density=16384,maxbpcg=1024 -s ${Math.min(fsSizeMiB, 2047)}m -N ${stage}/etc -F ${bare}/rootfs.mtree -T 1717200000 ${bare}/rootfs.ufs ${stage} > /dev/null`,
  disk: `truncate -s ${DISK} ${bare}/disk.raw && sgdisk -a 1 -n 1:40:+1024 -t 1:A501 -c 1:gptboot0 -n 2:2048:+2097152 -t 2:A502 -c 2:swapfs -n 3:2099200:0 -t 3:A503 -c 3:rootfs ${bare}/disk.raw > /dev/null && dd if=${stage}/boot/pmbr of=${bare}/disk.raw bs=446 count=1 conv=notrunc status=none && dd if=${stage}/boot/gptboot of=${bare}/disk.raw bs=512 seek=40 conv=notrunc status=none && dd if=${bare}/rootfs.ufs of=${bare}/disk.raw bs=1M seek=$((2099200*512)) oflag=seek_bytes conv=notrunc,sparse status=none`,
  qcow2: `qemu-img convert -f raw -O qcow2 ${bare}/disk.raw ${bare}/disk.qcow2`,
});

// Set-up: a warm cache, the file system size for makefs, and the decompressed tars for the writer alone.
fresh(fbOut, cache)();
timed('prime cache', fbxenBuild(`--cache-dir ${cache} --format raw`));
const primed = lastRecord();
fsSizeMiB = Math.ceil(primed.filesystem.sizeBytes / 1048576);
const tars = ['base', 'kernel'].map((s) => join(cache, 'sets', `${primed.inputs.sets.find((x) => x.name === s).sha256}.tar`));

const measurements = [
  { label: 'floor: xz -dc base.txz > /dev/null', script: `xz -dc ${base} > /dev/null` },
  { label: 'floor: both sets decoded in parallel', script: `xz -dc ${base} > /dev/null & xz -dc ${kernel} > /dev/null; wait` },
  ...(has7zz ? [{ label: '7zz x -txz -so base.txz > /dev/null', script: `7zz x -txz -so -bso0 -bsp0 ${base} > /dev/null` }] : []),
  { label: 'fbxen build (cold, raw+qcow2)', key: 'cold', setup: fresh(fbOut), script: fbxenBuild('--no-cache --format raw,qcow2') },
  { label: 'fbxen build (cold, raw+qcow2, --xz-decoder xz)', key: 'coldXz', setup: fresh(fbOut), script: fbxenBuild('--no-cache --format raw,qcow2 --xz-decoder xz') },
  { label: 'fbxen build (cold, raw only)', setup: fresh(fbOut), script: fbxenBuild('--no-cache --format raw') },
  // warm: the decompressed sets come from the cache (a rebuild that changes only options/templates)
  { label: 'fbxen build (warm cache, raw+qcow2)', key: 'warm', setup: fresh(fbOut), script: fbxenBuild(`--cache-dir ${cache} --format raw,qcow2`) },
  // the UFS2 writer alone, from the decompressed tars (the UFS2 issue: throughput next to makefs)
  { label: 'fbxen UFS2 writer alone (from decompressed tars)', key: 'writer', setup: () => rmSync(join(SCRATCH, 'w.img'), { force: true }), script: `node ${join(ROOT, 'bench/ufs2-write.mjs')} ${join(SCRATCH, 'w.img')} ${tars.join(' ')}` },
];

const results = Object.fromEntries(measurements.map((m) => [m.label, { walls: [], rss: [] }]));
const records = {};
let writerStats;
const bareRuns = [];
for (let round = 0; round < RUNS; round++) {
  for (const m of measurements) {
    m.setup?.();
    const t = timed(m.label, m.script);
    results[m.label].walls.push(t.wall);
    results[m.label].rss.push(t.rssMB);
    if (m.key === 'writer') writerStats = JSON.parse(t.stdout.trim().split('\n').pop());
    else if (m.key) (records[m.key] ??= []).push(lastRecord().durationsMs);
    console.error(`round ${round + 1}: ${m.label}: ${t.wall} s, ${t.rssMB.toFixed(0)} MB`);
  }
  unstage();
  const run = {};
  let total = 0;
  let rss = 0;
  for (const [name, script] of Object.entries(bareStages())) {
    const t = timed(`bare ${name}`, script);
    run[name] = t.wall;
    total += t.wall;
    rss = Math.max(rss, t.rssMB);
  }
  run.total = Math.round(total * 100) / 100;
  run.rssMB = rss;
  bareRuns.push(run);
  unstage();
  console.error(`round ${round + 1}: bare pipeline: ${JSON.stringify(run)}`);
}
for (const r of Object.values(results)) {
  r.wall = median(r.walls);
  r.rssMB = median(r.rss);
}
const bareMedian = Object.fromEntries(Object.keys(bareRuns[0]).map((k) => [k, median(bareRuns.map((r) => r[k]))]));
const cold = results['fbxen build (cold, raw+qcow2)'];
const floor = results['floor: xz -dc base.txz > /dev/null'];
// per round, so that each ratio compares runs made under the same load
const perRound = (num, den) => num.walls.map((w, i) => w / den[i]);

const payload = statSync(base).size + statSync(kernel).size;
const summary = {
  date: new Date().toISOString(),
  machine: `${execFileSync('nproc').toString().trim()} cores, node ${process.version}`,
  sample: { dist: DIST, txzBytes: payload, tarBytes: writerStats.tarBytes, fileBytes: writerStats.fileBytes, entries: writerStats.entries },
  runs: RUNS,
  results,
  fbxenStagesMs: Object.fromEntries(Object.entries(records).map(([k, v]) => [k, v.at(-1)])),
  bare: { median: bareMedian, runs: bareRuns },
  ratios: {
    fbxenColdVsBare: cold.wall / bareMedian.total,
    fbxenColdVsBarePerRound: perRound(cold, bareRuns.map((r) => r.total)),
    fbxenColdVsFloor: cold.wall / floor.wall,
    fbxenColdVsFloorPerRound: perRound(cold, floor.walls),
    fbxenWarmVsCold: results['fbxen build (warm cache, raw+qcow2)'].wall / cold.wall,
  },
};
mkdirSync(WORK, { recursive: true });
writeFileSync(join(WORK, 'bench-build.json'), `${JSON.stringify(summary, null, 2)}\n`);

const mb = (b) => (b / 1e6).toFixed(0);
const fmt = (xs) => xs.map((x) => x.toFixed(2)).join(' / ');
const row = (label, wall, walls, rss) => `| ${label} | ${wall.toFixed(2)} | ${walls} | ${rss} |`;
console.log(`Sample: ${summary.sample.entries} entries, ${mb(summary.sample.tarBytes)} MB of tar (${mb(summary.sample.fileBytes)} MB file data), ${mb(payload)} MB compressed; ${RUNS} interleaved rounds, median; ${summary.machine}.\n`);
console.log('| measurement | wall s (median) | each round | peak RSS MB |\n|---|---|---|---|');
for (const [label, r] of Object.entries(results)) console.log(row(label, r.wall, fmt(r.walls), r.rssMB.toFixed(0)));
console.log(row('bare pipeline, total (extract+spec, makefs, GPT+dd, qemu-img)', bareMedian.total, fmt(bareRuns.map((r) => r.total)), bareMedian.rssMB.toFixed(0)));
for (const k of Object.keys(bareStages())) console.log(row(`  bare: ${k}`, bareMedian[k], fmt(bareRuns.map((r) => r[k])), ''));
const r = summary.ratios;
console.log(`\nfbxen cold / bare pipeline: ${r.fbxenColdVsBare.toFixed(2)}x (per round ${fmt(r.fbxenColdVsBarePerRound)}); fbxen cold / floor: ${r.fbxenColdVsFloor.toFixed(2)}x (per round ${fmt(r.fbxenColdVsFloorPerRound)}); warm / cold: ${r.fbxenWarmVsCold.toFixed(2)}x`);
console.log(`UFS2 writer alone: ${(writerStats.fileBytes / 1e6 / results['fbxen UFS2 writer alone (from decompressed tars)'].wall).toFixed(0)} MB/s of file data`);
console.log(`fbxen stage breakdown (last round, ms): ${JSON.stringify(summary.fbxenStagesMs)}`);
