/**
 * fbxen build, top to bottom: find and verify the sets; size the disk; decompress base and kernel
 * concurrently; stream the tar entries straight into the UFS2 writer inside the raw image's partition
 * (no staging tree, no root); write the GPT and boot code; convert to the other formats; write
 * build.json; rename everything into the output directory only when all of it is complete.
 *
 * buildImage is that sequence; each stage is its own module: set-source.ts (reading a set),
 * release-checks.ts, filesystem-stage.ts (the disk image), outputs-stage.ts (formats, build.json).
 */
import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { estimateUfs2Size, leadingLaneBytes } from '../ufs2/index.js';
import { temporarySibling } from '../util/atomic.js';
import { Sha256Worker } from '../util/sha256.js';
import type { BuildDeps, BuildRequest, BuildResult, TimedStep } from './build-types.js';
import { loadCustomisation } from './customize.js';
import { WrittenExtents } from './extents.js';
import { writeDiskImage } from './filesystem-stage.js';
import { planLayout, type DiskLayout } from './layout.js';
import { commitOutputs, makeRecord, prepareOutDir, writeFormats } from './outputs-stage.js';
import { stagePvhKernel } from './pvh-kernel.js';
import { checkRelease, releaseOf } from './release-checks.js';
import { resolveSets, type ResolvedSets } from './sets.js';
import { StaleCacheEntryError } from './set-cache.js';
import { SetSource } from './set-source.js';

export type { BuildDeps, BuildOutput, BuildRecord, BuildRequest, BuildResult } from './build-types.js';

const MAX_VERSION_SCRIPT = 1024 * 1024;

export async function build(req: BuildRequest, outer: BuildDeps): Promise<BuildResult> {
  try {
    return await buildOnce(req, outer);
  } catch (err) {
    // A cached set that failed its check as it streamed was removed; nothing was committed: start over
    // from the .txz (the first attempt's temporary files go with the run's cleanup).
    if (!(err instanceof StaleCacheEntryError)) throw err;
    outer.progress.warn(`${err.message}; building again from ${err.setName}.txz`);
    return buildOnce(req, outer);
  }
}

async function buildOnce(req: BuildRequest, outer: BuildDeps): Promise<BuildResult> {
  // A failure anywhere stops the decompressors too: nothing may be left running or blocked on a pipe.
  const controller = new AbortController();
  const onAbort = () => controller.abort(outer.signal.reason);
  outer.signal.addEventListener('abort', onAbort, { once: true });
  try {
    return await buildImage(req, { ...outer, signal: controller.signal });
  } catch (err) {
    controller.abort(err);
    throw err;
  } finally {
    outer.signal.removeEventListener('abort', onAbort);
  }
}

async function buildImage(req: BuildRequest, deps: BuildDeps): Promise<BuildResult> {
  const t0 = Date.now();
  const durations: Record<string, number> = {};
  const timed: TimedStep = async (key, title, fn) => {
    const start = Date.now();
    try {
      return await deps.progress.step(title, fn);
    } finally {
      durations[key] = Date.now() - start;
    }
  };

  // A release named on the command line is checked before anything is fetched or written.
  const named = req.release ?? req.releaseName;
  if (named) checkRelease(named, req.arch);
  const outDir = resolve(req.outDir);
  await prepareOutDir(outDir, deps.progress);

  const sets: ResolvedSets = await timed('fetch', 'Find and verify the distribution sets', (h) =>
    resolveSets({ dist: req.dist, release: req.release, arch: req.arch, mirror: req.mirror, cacheDir: req.cacheDir, signal: deps.signal, warn: (m) => deps.progress.warn(m) }, h),
  );

  const scratchDir = join(outDir, `.fbxen-scratch-${process.pid}`);
  deps.cleanup.push(`remove ${scratchDir}`, () => rm(scratchDir, { recursive: true, force: true }));
  const base = new SetSource(sets.sets.base, req, deps);
  const kernel = new SetSource(sets.sets.kernel, req, deps);
  // Sets that no flag names say which release they are in bin/freebsd-version: read from the start
  // of base.txz now, so that an unknown or unsupported release fails before the file system is written.
  // A --release-name is checked against them there too: build.json must not name another release.
  const release = req.release ?? (await timed('release', 'Read the release from bin/freebsd-version', async () => releaseOf(await base.peek('bin/freebsd-version', MAX_VERSION_SCRIPT), req.releaseName, req.arch)));

  const customisation = await loadCustomisation({
    templatesDir: req.templatesDir,
    guestDir: req.guestDir,
    overlay: req.overlay,
    vars: {
      hostname: req.hostname,
      comconsole_speed: '115200',
      autoboot_delay: '3',
      swap_line: req.swapSize > 0 ? '/dev/gpt/swapfs\t\tnone\t\tswap\tsw\t0\t0' : '# no swap partition',
    },
  });
  const customBytes = customisation.files.reduce((n, f) => n + f.content.length, 0);

  // The kernel set streams into the file system alongside base, into room of its own at the start of
  // the data area (ufs2 leadingLane), sized from its tar size and MANIFEST's entry count.
  let kernelLane!: { dataBytes: number; entries: number };
  const layout: DiskLayout = await timed('plan', 'Plan the disk layout', async () => {
    kernelLane = { dataBytes: await kernel.uncompressedSize(), entries: sets.sets.kernel.entries };
    const tarBytes = (await base.uncompressedSize()) + kernelLane.dataBytes;
    const entries = sets.sets.base.entries + sets.sets.kernel.entries + customisation.files.length + customisation.directories.length;
    // The kernel's room is sized for its worst case; what it leaves unused is free space in the middle.
    const laneSlack = leadingLaneBytes(kernelLane) - kernelLane.dataBytes;
    const needed = estimateUfs2Size({ dataBytes: tarBytes + customBytes + laneSlack, entries });
    return planLayout({ contentFsSize: needed, fsSize: req.fsSize, diskSize: req.diskSize, swapSize: req.swapSize, uefi: req.uefi, seed: `${req.name}/${sets.manifestSha256}` });
  });

  // The raw image, built under a temporary name and renamed into place only at the very end.
  const rawFinal = join(outDir, `${req.name}.raw`);
  const rawTmp = temporarySibling(rawFinal);
  const pending: string[] = [rawTmp];
  deps.cleanup.push('remove unfinished outputs', async () => {
    for (const p of pending) await rm(p, { force: true });
  });

  const written = new WrittenExtents();
  // The raw image's sha256 runs on a worker thread: the boot area and the swap are hashed while the sets
  // stream in, the rest once the file system is complete, alongside the other formats' conversion.
  const rawHash = new Sha256Worker(rawTmp, { signal: deps.signal });
  const image = await writeDiskImage({ req, deps, timed, sets, base, kernel, kernelLane, customisation, layout, rawTmp, scratchDir, outDir, written, rawHash });

  const { outputs, finals } = await writeFormats({ req, deps, timed, outDir, layout, image, rawTmp, rawFinal, written, rawHash, pending });

  // Beside the image, for boot --type pvh: Xen takes a PVH guest's kernel from the dom0.
  const pvhKernel = await stagePvhKernel(image.kernelBytes, outDir, req.name, pending);
  if (pvhKernel.final) finals.push(pvhKernel.final);
  const record = makeRecord({ req, deps, release, sets, layout, image, outputs, pvhKernel: pvhKernel.record, durationsMs: { ...durations, total: Date.now() - t0 } });
  await commitOutputs(outDir, record, finals, { keepRaw: req.formats.includes('raw'), rawTmp, pending });
  await rm(scratchDir, { recursive: true, force: true });
  return { record, outDir };
}
