/**
 * fbxen build, top to bottom: find and verify the sets; size the disk; decompress base and kernel
 * concurrently; stream the tar entries straight into the UFS2 writer inside the raw image's partition
 * (no staging tree, no root); write the GPT and boot code; convert to the other formats; write
 * build.json; rename everything into the output directory only when all of it is complete.
 */
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { EnvironmentError, InputError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import { formatBytes, type Progress } from '../progress.js';
import { createFileBlockTarget, createUfs2Writer, estimateUfs2Size, leadingLaneBytes } from '../ufs2/index.js';
import type { Lane, Ufs2Stats } from '../ufs2/types.js';
import { removeStalePartials, syncFile, temporarySibling } from '../util/atomic.js';
import type { CleanupStack } from '../util/cleanup.js';
import { settleAll } from '../util/settle.js';
import { Sha256Worker, sha256File } from '../util/sha256.js';
import { loadCustomisation } from './customize.js';
import { EntryGuard } from './entries.js';
import { WrittenExtents } from './extents.js';
import { OUTPUT_FORMATS, type OutputFormatName } from './formats.js';
import { guidFromSeed, renderGpt, SECTOR, type GptPartition } from './gpt.js';
import { planLayout, type DiskLayout } from './layout.js';
import { readKernelConfig, type KernelConfig } from './kernel-config.js';
import { checkSupported, parseRelease, resolveSets, XzListSchema, type Arch, type ResolvedSets, type SetFile, type SetName } from './sets.js';
import { boundExpanded, checkExpandedSize, SetCache, StaleCacheEntryError } from './set-cache.js';
import { readTar, type TarEntry } from './tar.js';
import { decodeCommand, decoderComplaint, type XzDecoder } from './xz-decoder.js';

export interface BuildRequest {
  release?: string | undefined;
  /** Names the --dist sets (e.g. 14.3-RELEASE) when their bin/freebsd-version cannot tell. */
  releaseName?: string | undefined;
  arch: Arch;
  mirror: string;
  dist?: string | undefined;
  name: string;
  outDir: string;
  formats: OutputFormatName[];
  /** Root file system size in bytes; undefined: content plus headroom. */
  fsSize?: number | undefined;
  /** Disk size in bytes; undefined: 6 GiB or what the content needs, whichever is larger. */
  diskSize?: number | undefined;
  swapSize: number;
  uefi: boolean;
  hostname: string;
  overlay?: string | undefined;
  /** Build even when the kernel lacks options XENHVM / device xenpci. */
  allowNonXenKernel: boolean;
  cacheDir: string;
  useCache: boolean;
  /** The program that decompresses the sets (resolved from --xz-decoder). */
  xzDecoder: XzDecoder;
  /** SOURCE_DATE_EPOCH; undefined: the newest entry of the sets. */
  sourceDateEpoch?: number | undefined;
  templatesDir: string;
  guestDir: string;
  vcpus: number;
  memoryMiB: number;
}

export interface BuildDeps {
  runner: Runner;
  progress: Progress;
  signal: AbortSignal;
  cleanup: CleanupStack;
  toolVersions?: Record<string, string>;
}

export interface BuildOutput {
  format: OutputFormatName;
  path: string;
  size: number;
  sha256: string;
}

export interface BuildRecord {
  schema: 'fbxen-build/1';
  name: string;
  release: string;
  arch: Arch;
  inputs: { origin: string; manifestSha256: string; sets: { name: SetName; source: string; sha256: string; entries: number }[]; overlay?: string | undefined };
  options: Record<string, unknown>;
  timestamp: number;
  kernel: { ident: string | undefined; machine: string | undefined; source: KernelConfig['source']; xenhvm: boolean; xenpci: boolean; xenOptions: string[] };
  partitions: { index: number; label: string; type: string; guid: string; firstLba: number; lastLba: number; bytes: number }[];
  diskGuid: string;
  filesystem: Ufs2Stats & { label: string };
  entries: number;
  outputs: BuildOutput[];
  tools: Record<string, string>;
  durationsMs: Record<string, number>;
}

const CAPTURED = ['boot/pmbr', 'boot/gptboot', 'boot/loader.efi', 'boot/kernel/kernel'] as const;
const MAX_CAPTURE = 256 * 1024 * 1024;

interface SetStream {
  chunks: AsyncIterable<Uint8Array>;
  /** Resolves when the decompressor (if any) exited cleanly and the cache copy is in place. */
  done: Promise<void>;
  /** Read from the decompressed-set cache: no decoder runs. */
  cached: boolean;
}

function decompressError(set: SetFile, err: unknown, decoder: XzDecoder): InputError {
  const detail = decoderComplaint(decoder, err instanceof Error ? err.message.split('\n').slice(-1)[0]! : String(err));
  return new InputError(`${set.name}.txz could not be decompressed: ${detail}`, {
    hint: 'the set is damaged or truncated (its sha256 matched MANIFEST, so MANIFEST is damaged too); fetch the release again',
    cause: err,
  });
}

class SetSource {
  // The decompressed-set cache proves its entries (set-cache.ts); the tar's size the decoder may not exceed.
  private readonly cache: SetCache;
  private expected: number | undefined;
  constructor(
    private readonly set: SetFile,
    private readonly req: BuildRequest,
    private readonly deps: BuildDeps,
  ) {
    this.cache = new SetCache({ cacheDir: req.cacheDir, set, signal: deps.signal, warn: (m) => deps.progress.warn(m), cleanup: deps.cleanup });
  }

  private async entry() {
    return this.req.useCache ? this.cache.lookup() : undefined;
  }

  async uncompressedSize(): Promise<number> {
    const hit = await this.entry();
    if (hit) return (this.expected = hit.size);
    const r = await this.deps.runner.run('xz', ['--robot', '--list', this.set.path], { signal: this.deps.signal, allowFailure: true });
    const parsed = XzListSchema.safeParse(r.stdout);
    if (r.exitCode !== 0 || !parsed.success) throw decompressError(this.set, new Error(r.stderr.trim() || 'xz --list found no index'), 'xz');
    return (this.expected = checkExpandedSize(this.set, parsed.data));
  }

  private decompress(lowPriority = false): { chunks: AsyncIterable<Uint8Array>; exited: Promise<unknown> } {
    const [tool, args] = decodeCommand(this.req.xzDecoder, this.set.path);
    const proc = lowPriority ? this.deps.runner.stream('nice', ['-n', '10', tool, ...args], { signal: this.deps.signal }) : this.deps.runner.stream(tool, args, { signal: this.deps.signal });
    const set = this.set;
    const exited = proc.done.catch((err: unknown) => {
      if (this.deps.signal.aborted) throw this.deps.signal.reason;
      throw decompressError(set, err, this.req.xzDecoder);
    });
    // Awaited by the reader when it reaches the end; a build that fails earlier must not leave it unhandled.
    exited.catch(() => undefined);
    async function* chunks() {
      for await (const c of proc.stdout) yield c as Buffer;
      await exited;
    }
    return { chunks: chunks(), exited };
  }

  /**
   * Streams the tar straight from the decoder (copying it into the cache on the way). `lowPriority`:
   * the decoder runs at nice 10, so that when the 2 cores are contended the other set's decoder, the
   * critical path, wins (kernel.txz: a quarter of base.txz's size).
   */
  /**
   * The data of one file of the set (at most `max` bytes), read from the start of the tar without
   * writing anything; the decoder is stopped as soon as the file is seen. undefined: not in the set.
   */
  async peek(wanted: string, max: number): Promise<Buffer | undefined> {
    const stop = new AbortController();
    const onAbort = () => stop.abort(this.deps.signal.reason);
    this.deps.signal.addEventListener('abort', onAbort, { once: true });
    try {
      // From the .txz, never the cache: a cache entry is proven only once read to its end (set-cache.ts),
      // and a peek stops early.
      const [tool, args] = decodeCommand(this.req.xzDecoder, this.set.path);
      const proc = this.deps.runner.stream(tool, args, { signal: stop.signal });
      const source: AsyncIterable<Uint8Array> = proc.stdout;
      const exited: Promise<unknown> = proc.done;
      for await (const entry of readTar(source, `${this.set.name}.txz`)) {
        if (entry.header.type !== 'file' || entry.header.name.replace(/^(\.\/)+/, '') !== wanted) continue;
        const parts: Buffer[] = [];
        for await (const c of capture(entry.data, parts, wanted, max));
        return Buffer.concat(parts);
      }
      await exited.catch((err: unknown) => {
        throw this.deps.signal.aborted ? this.deps.signal.reason : decompressError(this.set, err, this.req.xzDecoder);
      });
      return undefined;
    } finally {
      this.deps.signal.removeEventListener('abort', onAbort);
      stop.abort(); // the decoder, if it is still running
    }
  }

  async stream(lowPriority = false): Promise<SetStream> {
    const hit = await this.entry();
    if (hit) return { chunks: this.cache.read(hit), done: Promise.resolve(), cached: true };
    // No more than the xz index announced (itself within the limit) is ever passed on or cached.
    const expected = this.expected ?? (await this.uncompressedSize());
    const chunks = boundExpanded(this.decompress(lowPriority).chunks, this.set, expected);
    if (!this.req.useCache) return { chunks, done: Promise.resolve(), cached: false };
    // Copied into the cache on the way, under a temporary name, renamed with its record when complete.
    return { chunks: this.cache.store(chunks), done: Promise.resolve(), cached: false };
  }
}

const MAX_VERSION_SCRIPT = 1024 * 1024;

function checkRelease(name: string, arch: Arch): void {
  checkSupported(parseRelease(name.replace(/-p\d+$/, '')), arch);
}

/**
 * The release of --dist sets: what bin/freebsd-version names, or --release-name when it names none
 * (a --release-name it contradicts is refused); checked against the support matrix.
 */
function releaseOf(script: Buffer | undefined, releaseName: string | undefined, arch: Arch): string {
  const found = releaseFromFreebsdVersion(script);
  if (releaseName) {
    if (found && found.replace(/-p\d+$/, '') !== releaseName.replace(/-p\d+$/, '')) {
      throw new InputError(`--release-name ${releaseName}, but the sets' bin/freebsd-version says ${found}`, { hint: `drop --release-name (the sets name themselves), or give --release-name ${found}` });
    }
    return releaseName;
  }
  if (!found) {
    throw new InputError(`cannot tell the release of these sets: ${script ? "base.txz's bin/freebsd-version has no USERLAND_VERSION" : 'base.txz has no bin/freebsd-version'}`, {
      hint: 'name them with --release-name, e.g. --release-name 14.3-RELEASE (nothing was written)',
    });
  }
  if (!/^\d+\.\d+-[A-Z0-9-]+$/.test(found)) {
    throw new InputError(`base.txz's bin/freebsd-version names ${JSON.stringify(found.slice(0, 64))}, not a FreeBSD release`, { hint: 'name the sets with --release-name, e.g. --release-name 14.3-RELEASE (nothing was written)' });
  }
  checkRelease(found, arch);
  return found;
}

function releaseFromFreebsdVersion(script: Buffer | undefined): string | undefined {
  const m = script && /USERLAND_VERSION="([^"]+)"/.exec(script.toString('latin1'));
  return m?.[1];
}

/** Writes a file's chunks to `out` while passing them on; used for the few files the build needs itself. */
async function* capture(data: AsyncIterable<Uint8Array>, into: Buffer[], path: string, max = MAX_CAPTURE): AsyncGenerator<Uint8Array> {
  let total = 0;
  for await (const c of data) {
    total += c.length;
    if (total > max) throw new InputError(`${path} is larger than ${formatBytes(max)}`, { hint: 'the set is not a FreeBSD release set' });
    into.push(Buffer.from(c));
    yield c;
  }
}

export interface BuildResult {
  record: BuildRecord;
  outDir: string;
}

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
  const timed = async <T>(key: string, title: string, fn: (h: import('../progress.js').StepHandle) => Promise<T>) => {
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
  const outStat = await stat(outDir).catch(() => undefined);
  if (outStat && !outStat.isDirectory()) {
    throw new InputError(`the output path ${outDir} exists and is not a directory`, { hint: 'give --out a directory (it is created when missing)' });
  }
  await mkdir(outDir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new EnvironmentError(`cannot create the output directory ${outDir}: ${err.code}`, { hint: 'choose another --out' });
  });
  // What builds killed by SIGKILL or a power cut left here (never a live build's) is removed.
  for (const r of await removeStalePartials(outDir, [/^\.fbxen-scratch-(\d+)$/])) deps.progress.warn(`removed ${r.path} (${formatBytes(r.bytes)}), left by a build that no longer runs`);

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

  const captured = new Map<string, Buffer[]>(CAPTURED.map((p) => [p, []]));
  let newestMtime = 0;
  let fsStats!: Ufs2Stats;
  let entryCount = 0;
  let kernelConfig!: KernelConfig;
  const fsOptions = {
    sizeBytes: layout.fsSize,
    volumeLabel: 'rootfs',
    seed: `${req.name}/${sets.sets.base.sha256}/${sets.sets.kernel.sha256}`,
    timestamp: 0,
    leadingLane: kernelLane,
    // Names are the tar's bytes (and customize.ts's), kept exactly: UFS names are byte strings.
    nameEncoding: 'bytes' as const,
  };

  const written = new WrittenExtents();
  // The raw image's sha256 runs on a worker thread: the boot area and the swap are hashed while the sets
  // stream in, the rest once the file system is complete, alongside the other formats' conversion.
  const rawHash = new Sha256Worker(rawTmp, { signal: deps.signal });
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

    const feed = async (chunks: AsyncIterable<Uint8Array>, label: string, lane: Lane, h: import('../progress.js').StepHandle) => {
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

    /**
     * The protective MBR, both GPT copies and gptboot: everything base.txz decides outside the
     * partitions. Written as soon as base has given pmbr and gptboot, so the worker hashes everything
     * before the root partition (the boot area and the swap) while the sets are still streaming.
     */
    const complete = new Set<string>();
    let bootAreaWritten: Promise<void> | undefined;
    const bootArea = (): Promise<void> => {
      bootAreaWritten ??= writeBootArea().then(() => {
        rawHash.hashTo((layout.esp ?? layout.rootfs).firstLba * SECTOR, written.ranges());
      });
      return bootAreaWritten;
    };
    const writeBootArea = async () => {
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

      kernelConfig = checkKernel(captured.get('boot/kernel/kernel')!, req);
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
        await writeEspImage(fh, esp, efi, req.arch, fsOptions.timestamp, deps.runner, scratchDir);
        written.add(esp.firstLba * SECTOR, esp.bytes);
      });
    }
  } catch (err) {
    throw translateIoError(err, outDir);
  } finally {
    await fh.close();
  }

  const outputs: BuildOutput[] = [];
  const finals: [string, string][] = [[rawTmp, rawFinal]];
  await timed('formats', `Write ${req.formats.join(', ')}`, async (h) => {
    // While the converters read the raw image, the worker finishes its sha256 on the second core.
    const ranges = written.ranges();
    const rawDigest = rawHash.digest(layout.diskSize, ranges);
    // The converters run at once (each reads the raw image and writes its own file); each output is
    // hashed as soon as its converter is done, unless the converter hashed it on the way.
    const jobs = req.formats
      .filter((format) => format !== 'raw')
      .map((format) => {
        const spec = OUTPUT_FORMATS[format];
        const final = join(outDir, `${req.name}.${spec.extension}`);
        const path = temporarySibling(final);
        pending.push(path);
        finals.push([path, final]);
        h.output(`${format}: ${final}`);
        const made = spec.produce({ rawPath: rawTmp, written: ranges, outPath: path, signal: deps.signal, name: req.name, vcpus: req.vcpus, memoryMiB: req.memoryMiB, timestamp: fsOptions.timestamp, seed: fsOptions.seed });
        const output = made.then(async (m): Promise<BuildOutput> => ({ format, path: final, size: (await stat(path)).size, sha256: m?.sha256 ?? (await sha256File(path, { signal: deps.signal })) }));
        output.catch(() => undefined); // awaited below; a failure must not go unhandled meanwhile
        return { made, output };
      });
    // Nothing is left running when one fails: every converter and hash settles before the failure is thrown.
    await settleAll<unknown>(jobs.map((j) => j.made)).catch(async (err: unknown) => {
      await Promise.allSettled(jobs.map((j) => j.output));
      throw err;
    });
    const produced = jobs.map((j) => j.output);
    h.output('sha256 of the outputs');
    // Every output reaches the disk before it is renamed into place; syncing once the converters are
    // done keeps the write-back out of the way of their own writes.
    const synced = finals.map(([path]) => syncFile(path));
    const all = await settleAll<unknown>([rawDigest, ...produced, ...synced]);
    const raw: BuildOutput = { format: 'raw', path: rawFinal, size: layout.diskSize, sha256: all[0] as string };
    const others = all.slice(1, 1 + produced.length) as BuildOutput[];
    for (const format of req.formats) outputs.push(format === 'raw' ? raw : others.find((o) => o.format === format)!);
    if (!req.formats.includes('raw')) {
      // raw is the working image: without --format raw it is not kept.
      finals.shift();
      pending.push(rawTmp);
    }
  }).catch((err: unknown) => {
    throw translateIoError(err, outDir);
  });

  const record: BuildRecord = {
    schema: 'fbxen-build/1',
    name: req.name,
    release,
    arch: req.arch,
    inputs: {
      origin: sets.origin,
      manifestSha256: sets.manifestSha256,
      sets: Object.values(sets.sets).map((s) => ({ name: s.name, source: s.source, sha256: s.sha256, entries: s.entries })),
      overlay: req.overlay,
    },
    options: { formats: req.formats, fsSize: layout.fsSize, diskSize: layout.diskSize, swapSize: req.swapSize, uefi: req.uefi, hostname: req.hostname, sourceDateEpoch: req.sourceDateEpoch ?? null, allowNonXenKernel: req.allowNonXenKernel },
    timestamp: fsOptions.timestamp,
    kernel: {
      ident: kernelConfig.ident,
      machine: kernelConfig.machine,
      source: kernelConfig.source,
      xenhvm: kernelConfig.xenhvm,
      xenpci: kernelConfig.xenpci,
      xenOptions: [...kernelConfig.options.filter((o) => /XEN/i.test(o)).map((o) => `options ${o}`), ...kernelConfig.devices.filter((d) => /^xen/.test(d)).map((d) => `device ${d}`)],
    },
    partitions: layout.partitions.map((p: GptPartition, i) => ({ index: i + 1, label: p.label, type: p.type, guid: p.guid, firstLba: p.firstLba, lastLba: p.lastLba, bytes: (p.lastLba - p.firstLba + 1) * SECTOR })),
    diskGuid: layout.diskGuid,
    filesystem: { ...fsStats, label: 'rootfs' },
    entries: entryCount,
    outputs,
    tools: deps.toolVersions ?? {},
    durationsMs: { ...durations, total: Date.now() - t0 },
  };

  // Everything is complete: move the outputs into place, build.json last (its presence marks a finished build).
  const buildJsonTmp = temporarySibling(join(outDir, 'build.json'));
  pending.push(buildJsonTmp);
  const { writeFile } = await import('node:fs/promises');
  await writeFile(buildJsonTmp, `${JSON.stringify(record, null, 2)}\n`);
  await rm(join(outDir, 'build.json'), { force: true });
  for (const [tmp, final] of finals) await rename(tmp, final);
  await rename(buildJsonTmp, join(outDir, 'build.json'));
  if (!req.formats.includes('raw')) await rm(rawTmp, { force: true });
  pending.length = 0;
  await rm(scratchDir, { recursive: true, force: true });
  return { record, outDir };
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

function checkKernel(parts: Buffer[], req: BuildRequest): KernelConfig {
  if (!parts.length) {
    throw new InputError('kernel.txz has no /boot/kernel/kernel', { hint: 'the kernel set is incomplete; fetch it again' });
  }
  const config = readKernelConfig(Buffer.concat(parts));
  if (!(config.xenhvm && config.xenpci) && !req.allowNonXenKernel) {
    const missing = [!config.xenhvm && 'options XENHVM', !config.xenpci && 'device xenpci'].filter(Boolean).join(' and ');
    throw new InputError(`the kernel (ident ${config.ident ?? 'unknown'}) lacks ${missing}${config.source === 'strings' ? ' (it has no embedded config; judged from its strings)' : ''}: it would run on Xen without PV drivers, vector callback or PV timers`, {
      hint: 'use a GENERIC kernel (10.0 or later), or add both lines to your kernel config; --allow-non-xen-kernel builds anyway',
    });
  }
  return config;
}

function checkArch(config: KernelConfig, arch: Arch): void {
  if (config.elfMachine !== 'other' && config.elfMachine !== arch) {
    throw new InputError(`the kernel is an ${config.elfMachine} kernel, but --arch is ${arch}`, { hint: `use --arch ${config.elfMachine}, or the ${arch} sets` });
  }
}

function translateIoError(err: unknown, outDir: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new EnvironmentError(`no space left on the device holding ${outDir}`, { hint: 'free some space or choose --out on a larger file system (nothing half-written was left)', cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new EnvironmentError(`cannot write in ${outDir}: ${code}`, { hint: 'choose a writable --out', cause: err });
  }
  return err;
}

