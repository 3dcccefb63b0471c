/**
 * The disk image's stage of the build: both sets stream straight into the UFS2 writer inside the raw
 * image's root partition (no staging tree, no root), the boot area (protective MBR, GPT, gptboot) is
 * written as soon as base has given it, fbxen's own files are added, and the ESP last.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { EnvironmentError, InputError } from '../errors.js';
import { formatBytes, type StepHandle } from '../progress.js';
import { createFileBlockTarget, createUfs2Writer } from '../ufs2/index.js';
import type { Lane, Ufs2Stats } from '../ufs2/types.js';
import { settleAll } from '../util/settle.js';
import type { Sha256Worker } from '../util/sha256.js';
import type { BuildDeps, BuildRequest, TimedStep } from './build-types.js';
import type { Customisation } from './customize.js';
import { EntryGuard } from './entries.js';
import type { WrittenExtents } from './extents.js';
import { renderGpt, SECTOR } from './gpt.js';
import type { KernelConfig } from './kernel-config.js';
import type { DiskLayout } from './layout.js';
import { checkArch, checkKernel } from './release-checks.js';
import type { ResolvedSets } from './sets.js';
import { capture, type SetSource } from './set-source.js';
import { readTar, type TarEntry } from './tar.js';
import { translateIoError } from './io-errors.js';

/** The files of the sets the build needs itself (boot code, the kernel to check), kept as they stream by. */
const CAPTURED = ['boot/pmbr', 'boot/gptboot', 'boot/loader.efi', 'boot/kernel/kernel'] as const;

export interface DiskImageInput {
  req: BuildRequest;
  deps: BuildDeps;
  timed: TimedStep;
  sets: ResolvedSets;
  base: SetSource;
  kernel: SetSource;
  /** The kernel set's room at the start of the data area (ufs2 leadingLane). */
  kernelLane: { dataBytes: number; entries: number };
  customisation: Customisation;
  layout: DiskLayout;
  /** The raw image's temporary name; created here. */
  rawTmp: string;
  scratchDir: string;
  outDir: string;
  written: WrittenExtents;
  rawHash: Sha256Worker;
}

export interface DiskImage {
  fsStats: Ufs2Stats;
  entryCount: number;
  kernelConfig: KernelConfig;
  /** /boot/kernel/kernel as the set gave it: kept beside the image for PVH (pvh-kernel.ts). */
  kernelBytes: Buffer;
  /** The build timestamp: SOURCE_DATE_EPOCH or the newest entry of the sets. */
  timestamp: number;
  /** The file system's seed, which the other formats' identifiers derive from too. */
  seed: string;
}

export async function writeDiskImage(input: DiskImageInput): Promise<DiskImage> {
  const { req, deps, timed, sets, base, kernel, customisation, layout, rawTmp, written, rawHash } = input;
  const captured = new Map<string, Buffer[]>(CAPTURED.map((p) => [p, []]));
  let newestMtime = 0;
  let fsStats!: Ufs2Stats;
  let entryCount = 0;
  let kernelConfig!: KernelConfig;
  let kernelBytes!: Buffer;
  const fsOptions = {
    sizeBytes: layout.fsSize,
    volumeLabel: 'rootfs',
    seed: `${req.name}/${sets.sets.base.sha256}/${sets.sets.kernel.sha256}`,
    timestamp: 0,
    leadingLane: input.kernelLane,
    // Names are the tar's bytes (and customize.ts's), kept exactly: UFS names are byte strings.
    nameEncoding: 'bytes' as const,
  };

  const fh: FileHandle = await open(rawTmp, 'w+');
  try {
    await fh.truncate(layout.diskSize).catch((err: NodeJS.ErrnoException) => {
      throw new EnvironmentError(`cannot size ${rawTmp} to ${formatBytes(layout.diskSize)}: ${err.code}`, { hint: 'choose --out on a file system with sparse-file support and room' });
    });
    const target = createFileBlockTarget(fh, layout.rootfs.firstLba * SECTOR);
    // One target per lane: each set's writes gather into large contiguous ones of their own.
    const kernelTarget = createFileBlockTarget(fh, layout.rootfs.firstLba * SECTOR);
    const writer = createUfs2Writer([written.recording(target, layout.rootfs.firstLba * SECTOR), written.recording(kernelTarget, layout.rootfs.firstLba * SECTOR)], fsOptions);
    const guard = new EntryGuard(writer, { replaced: new Set(customisation.files.map((f) => f.path)) });

    const feed = async (chunks: AsyncIterable<Uint8Array>, label: string, lane: Lane, h: StepHandle) => {
      let last = 0;
      for await (const entry of readTar(chunks, label) as AsyncGenerator<TarEntry>) {
        const path = entry.header.name.replace(/^(\.\/)+/, '').replace(/\/+$/, '');
        const sink = captured.get(path);
        if (sink && entry.header.type === 'file') entry.data = capture(entry.data, sink, path);
        if (entry.header.mtime > newestMtime) newestMtime = entry.header.mtime;
        await guard.add(entry, label, lane);
        if (sink) {
          complete.add(path);
          if (complete.has('boot/pmbr') && complete.has('boot/gptboot')) await bootArea();
        }
        if (guard.entries - last >= 500) {
          last = guard.entries;
          h.output(`${label}: ${guard.entries} entries, ${formatBytes(guard.fileBytes)}`);
        }
      }
      // The tar reader stops at the end-of-archive marker; read the record padding after it too, so the
      // decompressor exits (and its failure, if any, is seen) and the cache copy is complete.
      for await (const _ of chunks);
    };

    // Written as soon as base has given pmbr and gptboot, so the worker hashes everything before the
    // root partition (the boot area and the swap) while the sets are still streaming.
    const complete = new Set<string>();
    let bootAreaWritten: Promise<void> | undefined;
    const bootArea = (): Promise<void> => {
      bootAreaWritten ??= writeBootArea(fh, layout, captured, written).then(() => {
        rawHash.hashTo((layout.esp ?? layout.rootfs).firstLba * SECTOR, written.ranges());
      });
      return bootAreaWritten;
    };

    await timed('filesystem', 'Write the root file system from the sets (one pass)', async (h) => {
      // Both sets stream straight into the writer at once, each on its own lane; the image does not
      // depend on how they interleave (ufs2 leadingLane, EntryGuard). A failure in one waits for the
      // other to settle, so no decoder or write is left running.
      const [baseStream, kernelStream] = await Promise.all([base.stream(), kernel.stream(true)]);
      const feedBase = () => feed(baseStream.chunks, 'base.txz', 0, h);
      const feedKernel = () => feed(kernelStream.chunks, 'kernel.txz', 1, h);
      // From the cache no decoder runs and Node is the bottleneck: one set after the other is faster
      // there (warm build 4.4 s against 4.9 s), and gives the same bytes.
      if (baseStream.cached && kernelStream.cached) await feedBase().then(feedKernel);
      else await settleAll([feedBase(), feedKernel()]);
      await Promise.all([baseStream.done, kernelStream.done]);
      // A set without pmbr or gptboot fails here, with the file it lacks named.
      await bootArea();

      kernelConfig = await checkKernel(captured.get('boot/kernel/kernel')!, req);
      kernelBytes = Buffer.concat(captured.get('boot/kernel/kernel')!);
      // The writer reads the timestamp in finish(); fbxen's own files are dated by it too.
      fsOptions.timestamp = req.sourceDateEpoch ?? newestMtime;
      const made = { uid: 0, gid: 0, mtime: fsOptions.timestamp, flags: 0 };
      for (const d of customisation.directories) guard.overlayDirectory(d.path, { ...made, mode: d.mode });
      for (const f of customisation.files) await guard.overlayFile(f.path, { ...made, mode: f.mode }, f.content);
      guard.finishDeferredLinks();
      entryCount = guard.entries;
      h.output('writing inodes, directories and cylinder groups');
      fsStats = await writer.finish();
      await target.flush?.();
    });

    checkArch(kernelConfig, req.arch);

    if (layout.esp) {
      const esp = layout.esp;
      await timed('esp', 'Write the EFI system partition', async () => {
        const efi = joined(captured, 'boot/loader.efi');
        if (!efi?.length) throw new InputError('--uefi: this release has no /boot/loader.efi', { hint: 'build without --uefi (BIOS boot through gptboot works on Xen HVM)' });
        const { writeEspImage } = await import('./esp.js');
        // The ESP's FAT carries the build timestamp, known only once every entry was seen.
        await writeEspImage(fh, esp, efi, req.arch, fsOptions.timestamp, deps.runner, input.scratchDir);
        written.add(esp.firstLba * SECTOR, esp.bytes);
      });
    }
  } catch (err) {
    throw translateIoError(err, input.outDir);
  } finally {
    await fh.close();
  }
  return { fsStats, entryCount, kernelConfig, kernelBytes, timestamp: fsOptions.timestamp, seed: fsOptions.seed };
}

/**
 * The protective MBR, both GPT copies and gptboot: everything base.txz decides outside the partitions.
 */
async function writeBootArea(fh: FileHandle, layout: DiskLayout, captured: Map<string, Buffer[]>, written: WrittenExtents): Promise<void> {
  const pmbr = required(captured, 'boot/pmbr', 512);
  const gptboot = required(captured, 'boot/gptboot', 1);
  if (gptboot.length > layout.boot.bytes) {
    throw new InputError(`boot/gptboot (${formatBytes(gptboot.length)}) does not fit the ${formatBytes(layout.boot.bytes)} freebsd-boot partition`, { hint: 'the set is not a FreeBSD one' });
  }
  const { head, tail, tailLba } = renderGpt({ totalSectors: layout.diskSize / SECTOR, diskGuid: layout.diskGuid, partitions: layout.partitions }, pmbr);
  await fh.write(head, 0, head.length, 0);
  await fh.write(tail, 0, tail.length, tailLba * SECTOR);
  await fh.write(gptboot, 0, gptboot.length, layout.boot.firstLba * SECTOR);
  written.add(0, head.length);
  written.add(tailLba * SECTOR, tail.length);
  written.add(layout.boot.firstLba * SECTOR, gptboot.length);
}

function joined(captured: Map<string, Buffer[]>, path: string): Buffer | undefined {
  const parts = captured.get(path);
  return parts && parts.length ? Buffer.concat(parts) : undefined;
}

function required(captured: Map<string, Buffer[]>, path: string, minSize: number): Buffer {
  const data = joined(captured, path);
  if (!data || data.length < minSize) {
    throw new InputError(`the sets have no /${path}${data ? ' of a plausible size' : ''}`, {
      hint: 'base.txz of every FreeBSD release holds /boot/pmbr and /boot/gptboot; these sets are incomplete or not FreeBSD',
    });
  }
  return data;
}
