/**
 * The build's output side: the --out directory made ready, the other formats converted from the raw
 * image and hashed, build.json assembled, and everything renamed into place only when all of it is
 * complete (build.json last: its presence marks a finished build).
 */
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { EnvironmentError, InputError } from '../errors.js';
import { formatBytes, type Progress } from '../progress.js';
import { removeStalePartials, syncFile, temporarySibling } from '../util/atomic.js';
import { settleAll } from '../util/settle.js';
import { sha256File, type Sha256Worker } from '../util/sha256.js';
import type { BuildDeps, BuildOutput, BuildRecord, BuildRequest, TimedStep } from './build-types.js';
import type { WrittenExtents } from './extents.js';
import type { DiskImage } from './filesystem-stage.js';
import { OUTPUT_FORMATS } from './formats.js';
import { SECTOR, type GptPartition } from './gpt.js';
import type { DiskLayout } from './layout.js';
import type { PvhKernelRecord } from './pvh-kernel.js';
import type { ResolvedSets } from './sets.js';
import { translateIoError } from './io-errors.js';

/** Creates --out when missing; removes what builds killed by SIGKILL or a power cut left there (never a live build's). */
export async function prepareOutDir(outDir: string, progress: Progress): Promise<void> {
  const outStat = await stat(outDir).catch(() => undefined);
  if (outStat && !outStat.isDirectory()) {
    throw new InputError(`the output path ${outDir} exists and is not a directory`, { hint: 'give --out a directory (it is created when missing)' });
  }
  await mkdir(outDir, { recursive: true }).catch((err: NodeJS.ErrnoException) => {
    throw new EnvironmentError(`cannot create the output directory ${outDir}: ${err.code}`, { hint: 'choose another --out' });
  });
  for (const r of await removeStalePartials(outDir, [/^\.fbxen-scratch-(\d+)$/])) progress.warn(`removed ${r.path} (${formatBytes(r.bytes)}), left by a build that no longer runs`);
}

export interface FormatsInput {
  req: BuildRequest;
  deps: BuildDeps;
  timed: TimedStep;
  outDir: string;
  layout: DiskLayout;
  image: DiskImage;
  rawTmp: string;
  rawFinal: string;
  written: WrittenExtents;
  /** The worker hashing the raw image (the boot area and swap already hashed). */
  rawHash: Sha256Worker;
  /** Temporary files the run's cleanup removes; the converters' outputs are added to it. */
  pending: string[];
}

export interface Formats {
  outputs: BuildOutput[];
  /** Temporary name and final name of every output to keep, in the order they are renamed. */
  finals: [string, string][];
}

export async function writeFormats(input: FormatsInput): Promise<Formats> {
  const { req, deps, timed, outDir, layout, image, rawTmp, rawFinal, written, pending } = input;
  const outputs: BuildOutput[] = [];
  const finals: [string, string][] = [[rawTmp, rawFinal]];
  await timed('formats', `Write ${req.formats.join(', ')}`, async (h) => {
    // While the converters read the raw image, the worker finishes its sha256 on the second core.
    const ranges = written.ranges();
    const rawDigest = input.rawHash.digest(layout.diskSize, ranges);
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
        const made = spec.produce({ rawPath: rawTmp, written: ranges, outPath: path, signal: deps.signal, name: req.name, vcpus: req.vcpus, memoryMiB: req.memoryMiB, timestamp: image.timestamp, seed: image.seed });
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
  return { outputs, finals };
}

export interface RecordInput {
  req: BuildRequest;
  deps: BuildDeps;
  release: string;
  sets: ResolvedSets;
  layout: DiskLayout;
  image: DiskImage;
  outputs: BuildOutput[];
  pvhKernel: PvhKernelRecord;
  durationsMs: Record<string, number>;
}

/** build.json's content. */
export function makeRecord({ req, deps, release, sets, layout, image, outputs, pvhKernel, durationsMs }: RecordInput): BuildRecord {
  const { kernelConfig } = image;
  return {
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
    timestamp: image.timestamp,
    kernel: {
      ident: kernelConfig.ident,
      machine: kernelConfig.machine,
      source: kernelConfig.source,
      xenhvm: kernelConfig.xenhvm,
      xenpci: kernelConfig.xenpci,
      xenOptions: [...kernelConfig.options.filter((o) => /XEN/i.test(o)).map((o) => `options ${o}`), ...kernelConfig.devices.filter((d) => /^xen/.test(d)).map((d) => `device ${d}`)],
    },
    pvhKernel,
    partitions: layout.partitions.map((p: GptPartition, i) => ({ index: i + 1, label: p.label, type: p.type, guid: p.guid, firstLba: p.firstLba, lastLba: p.lastLba, bytes: (p.lastLba - p.firstLba + 1) * SECTOR })),
    diskGuid: layout.diskGuid,
    filesystem: { ...image.fsStats, label: 'rootfs' },
    entries: image.entryCount,
    outputs,
    tools: deps.toolVersions ?? {},
    durationsMs,
  };
}

/** Everything is complete: moves the outputs into place, build.json last. */
export async function commitOutputs(outDir: string, record: BuildRecord, finals: [string, string][], opts: { keepRaw: boolean; rawTmp: string; pending: string[] }): Promise<void> {
  const buildJsonTmp = temporarySibling(join(outDir, 'build.json'));
  opts.pending.push(buildJsonTmp);
  await writeFile(buildJsonTmp, `${JSON.stringify(record, null, 2)}\n`);
  await rm(join(outDir, 'build.json'), { force: true });
  for (const [tmp, final] of finals) await rename(tmp, final);
  await rename(buildJsonTmp, join(outDir, 'build.json'));
  if (!opts.keepRaw) await rm(opts.rawTmp, { force: true });
  opts.pending.length = 0;
}
