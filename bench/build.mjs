#!/usr/bin/env node
// fbxen build next to the bare pipeline of the same tools doing the same job, and next to the floor
// (xz -dc base.txz > /dev/null), in the same run, on a ~1 GB FreeBSD-shaped sample (generated, never
// committed). Each measurement runs N times; the median is reported with wall time and peak RSS
// (GNU time). Results: a JSON file in bench/.work and a Markdown table on stdout for docs/performance.md.
//
// usage: node bench/build.mjs [--runs 3] [--dist DIR]
//   The sample: python3 test/sample/make-sample.py bench/.work/dist-1g --payload-mb 1000
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
  console.error(`no sample at ${DIST}: python3 test/sample/make-sample.py ${DIST} --payload-mb 1000`);
  process.exit(2);
}
const CLI = join(ROOT, 'dist/cli.js');
const SCRATCH = join(WORK, 'scratch');

/** Runs a shell command under GNU time; returns wall seconds and peak RSS (MB) of the largest process. */
function timed(label, script) {
  execFileSync('sync');
  const r = spawnSync('/usr/bin/time', ['-f', '%e %M', 'bash', '-c', `set -eo pipefail; ${script}`], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (r.status !== 0) throw new Error(`${label} failed (${r.status}):\n${r.stderr.slice(-2000)}`);
  const [wall, rssKb] = r.stderr.trim().split('\n').pop().split(' ').map(Number);
  return { wall, rssMB: rssKb / 1024, stdout: r.stdout };
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const results = {};
function measure(label, setup, script) {
  const runs = [];
  for (let i = 0; i < RUNS; i++) {
    setup?.();
    runs.push(timed(label, script));
  }
  results[label] = { wall: median(runs.map((r) => r.wall)), rssMB: median(runs.map((r) => r.rssMB)), walls: runs.map((r) => r.wall), last: runs.at(-1).stdout };
  console.error(`${label}: ${results[label].walls.join(' / ')} s, median ${results[label].wall} s, ${results[label].rssMB.toFixed(0)} MB`);
}

const fresh = (...dirs) => () => {
  for (const d of dirs) {
    rmSync(d, { recursive: true, force: true });
    mkdirSync(d, { recursive: true });
  }
};
const base = join(DIST, 'base.txz');
const kernel = join(DIST, 'kernel.txz');
const DISK = '4G';

// The floor: decompressing the base set and throwing the bytes away.
measure('floor: xz -dc base.txz > /dev/null', null, `xz -dc ${base} > /dev/null`);
measure('floor: both sets decoded in parallel', null, `xz -dc ${base} > /dev/null & xz -dc ${kernel} > /dev/null; wait`);

// fbxen, cold: no cache, both sets decompressed, raw + qcow2.
const fbOut = join(SCRATCH, 'fbxen');
measure('fbxen build (cold, raw+qcow2)', fresh(fbOut), `CI=true node ${CLI} build --quiet --json --dist ${DIST} --out ${fbOut} --no-cache --disk-size ${DISK} --swap 1G --format raw,qcow2 > ${fbOut}/result.json`);
const fbRecord = JSON.parse(readFileSync(join(fbOut, 'build.json'), 'utf8'));
measure('fbxen build (cold, raw only)', fresh(fbOut), `CI=true node ${CLI} build --quiet --dist ${DIST} --out ${fbOut} --no-cache --disk-size ${DISK} --swap 1G --format raw > /dev/null`);
// fbxen, warm: the decompressed sets come from the cache (a rebuild that changes only options/templates).
const cache = join(SCRATCH, 'cache');
fresh(cache)();
timed('prime cache', `CI=true node ${CLI} build --quiet --dist ${DIST} --out ${fbOut} --cache-dir ${cache} --disk-size ${DISK} --format raw > /dev/null`);
measure('fbxen build (warm cache, raw+qcow2)', fresh(fbOut), `CI=true node ${CLI} build --quiet --dist ${DIST} --out ${fbOut} --cache-dir ${cache} --disk-size ${DISK} --swap 1G --format raw,qcow2 > /dev/null`);
const warmRecord = JSON.parse(readFileSync(join(fbOut, 'build.json'), 'utf8'));

// The UFS2 writer alone, from the decompressed tars (issue: UFS2 throughput next to makefs).
const tars = ['base', 'kernel'].map((s) => join(cache, 'sets', `${fbRecord.inputs.sets.find((x) => x.name === s).sha256}.tar`));
measure('fbxen UFS2 writer alone (from decompressed tars)', () => rmSync(join(SCRATCH, 'w.img'), { force: true }), `node ${join(ROOT, 'bench/ufs2-write.mjs')} ${join(SCRATCH, 'w.img')} ${tars.join(' ')}`);
const writerStats = JSON.parse(results['fbxen UFS2 writer alone (from decompressed tars)'].last.trim().split('\n').pop());

// The bare pipeline (imaging.md §1.3): extract to a staging tree with an mtree spec from the same stream,
// makefs (Debian's, with the geometry that avoids its lazy-inode bug), GPT with sgdisk + dd, qemu-img.
const stage = join(SCRATCH, 'stage');
const bare = join(SCRATCH, 'bare');
const unstage = () => {
  if (existsSync(stage)) execFileSync('chmod', ['-R', 'u+w', stage]);
  fresh(stage, bare)();
};
const extract = (set) =>
  `xz -dc ${set} | tee >(bsdtar -cf ${bare}/$(basename ${set}).mtree.raw --format=mtree --options='!all,type,uname,gname,uid,gid,mode,flags,link,time' @-) | bsdtar -xf - -C ${stage} --no-same-owner --no-same-permissions --no-fflags --no-xattrs --no-acls`;
const fsSize = Math.ceil((fbRecord.filesystem.sizeBytes * 1.0) / 1048576);
const stages = {
  extract: `${extract(base)} & ${extract(kernel)}; wait; sleep 0.5`,
  spec: `sed 's|^/\\. |. |' ${bare}/base.txz.mtree.raw ${bare}/kernel.txz.mtree.raw | awk '/^#/{if(!h++)print;next} !seen[$1]++' > ${bare}/rootfs.mtree`,
  makefs: `setarch x86_64 -R makefs -t ffs -B little -o version=2,bsize=65536,fsize=8192,density=16384,maxbpcg=1024 -s ${Math.min(fsSize, 2047)}m -N ${stage}/etc -F ${bare}/rootfs.mtree -T 1717200000 ${bare}/rootfs.ufs ${stage} > /dev/null`,
  disk: `truncate -s ${DISK} ${bare}/disk.raw && sgdisk -a 1 -n 1:40:+1024 -t 1:A501 -c 1:gptboot0 -n 2:2048:+2097152 -t 2:A502 -c 2:swapfs -n 3:2099200:0 -t 3:A503 -c 3:rootfs ${bare}/disk.raw > /dev/null && dd if=${stage}/boot/pmbr of=${bare}/disk.raw bs=446 count=1 conv=notrunc status=none && dd if=${stage}/boot/gptboot of=${bare}/disk.raw bs=512 seek=40 conv=notrunc status=none && dd if=${bare}/rootfs.ufs of=${bare}/disk.raw bs=1M seek=$((2099200*512)) oflag=seek_bytes conv=notrunc,sparse status=none`,
  qcow2: `qemu-img convert -f raw -O qcow2 ${bare}/disk.raw ${bare}/disk.qcow2`,
};
const bareRuns = [];
for (let i = 0; i < RUNS; i++) {
  unstage();
  const run = {};
  let total = 0;
  let rss = 0;
  for (const [name, script] of Object.entries(stages)) {
    const t = timed(`bare ${name}`, script);
    run[name] = t.wall;
    total += t.wall;
    rss = Math.max(rss, t.rssMB);
  }
  run.total = total;
  run.rssMB = rss;
  bareRuns.push(run);
  console.error(`bare pipeline run ${i + 1}: ${JSON.stringify(run)}`);
}
const bareMedian = Object.fromEntries(Object.keys(bareRuns[0]).map((k) => [k, median(bareRuns.map((r) => r[k]))]));
unstage();

const payload = statSync(base).size + statSync(kernel).size;
const summary = {
  date: new Date().toISOString(),
  machine: `${execFileSync('nproc').toString().trim()} cores, node ${process.version}`,
  sample: { dist: DIST, txzBytes: payload, tarBytes: writerStats.tarBytes, fileBytes: writerStats.fileBytes, entries: writerStats.entries },
  runs: RUNS,
  results,
  fbxenStagesMs: { cold: fbRecord.durationsMs, warm: warmRecord.durationsMs },
  bare: { median: bareMedian, runs: bareRuns },
  ratios: {
    fbxenColdVsBare: results['fbxen build (cold, raw+qcow2)'].wall / bareMedian.total,
    fbxenColdVsFloor: results['fbxen build (cold, raw+qcow2)'].wall / results['floor: xz -dc base.txz > /dev/null'].wall,
    fbxenWarmVsCold: results['fbxen build (warm cache, raw+qcow2)'].wall / results['fbxen build (cold, raw+qcow2)'].wall,
  },
};
for (const r of Object.values(results)) delete r.last;
mkdirSync(WORK, { recursive: true });
writeFileSync(join(WORK, 'bench-build.json'), `${JSON.stringify(summary, null, 2)}\n`);

const mb = (b) => (b / 1e6).toFixed(0);
const row = (label, wall, rss) => `| ${label} | ${wall.toFixed(2)} | ${rss.toFixed(0)} |`;
console.log(`Sample: ${summary.sample.entries} entries, ${mb(summary.sample.tarBytes)} MB of tar (${mb(summary.sample.fileBytes)} MB file data), ${mb(payload)} MB compressed; ${RUNS} runs, median; ${summary.machine}.\n`);
console.log('| measurement | wall s (median) | peak RSS MB |\n|---|---|---|');
for (const [label, r] of Object.entries(results)) console.log(row(label, r.wall, r.rssMB));
console.log(row('bare pipeline, total (extract+spec, makefs, GPT+dd, qemu-img)', bareMedian.total, bareMedian.rssMB));
for (const k of Object.keys(stages)) console.log(row(`  bare: ${k}`, bareMedian[k], 0).replace('| 0 |', '| |'));
console.log(`\nfbxen cold / bare pipeline: ${summary.ratios.fbxenColdVsBare.toFixed(2)}x; fbxen cold / floor: ${summary.ratios.fbxenColdVsFloor.toFixed(2)}x; warm / cold: ${summary.ratios.fbxenWarmVsCold.toFixed(2)}x`);
console.log(`UFS2 writer alone: ${(writerStats.fileBytes / 1e6 / results['fbxen UFS2 writer alone (from decompressed tars)'].wall).toFixed(0)} MB/s of file data, peak RSS ${results['fbxen UFS2 writer alone (from decompressed tars)'].rssMB.toFixed(0)} MB`);
console.log(`fbxen stage breakdown (cold, ms): ${JSON.stringify(fbRecord.durationsMs)}`);
