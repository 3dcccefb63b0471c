/**
 * The build command's core: fills defaults (name, cache, templates), prints the plan for --dry-run,
 * runs the pipeline, and for --check-reproducible builds a second time and compares byte for byte.
 */
import { open, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckFailedError, InputError } from '../errors.js';
import { formatCommand, type Runner } from '../exec/runner.js';
import { formatBytes, type Progress } from '../progress.js';
import type { CleanupStack } from '../util/cleanup.js';
import { OUTPUT_FORMATS, type OutputFormatName } from './formats.js';
import { build, type BuildRecord, type BuildRequest } from './pipeline.js';
import { checkSupported, mirrorDirectory, parseRelease, type Arch } from './sets.js';
import { decodeCommand, resolveXzDecoder, type XzDecoder, type XzDecoderChoice } from './xz-decoder.js';

export const PACKAGE_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export interface BuildCommandRequest {
  release?: string | undefined;
  /** --release-name: names --dist sets whose bin/freebsd-version cannot. */
  releaseName?: string | undefined;
  arch: Arch;
  mirror: string;
  dist?: string | undefined;
  name?: string | undefined;
  out: string;
  format: string[];
  size?: number | undefined;
  diskSize?: number | undefined;
  swap: number;
  uefi: boolean;
  hostname?: string | undefined;
  overlay?: string | undefined;
  allowNonXenKernel: boolean;
  cache: boolean;
  cacheDir?: string | undefined;
  xzDecoder: XzDecoderChoice;
  checkReproducible: boolean;
  dryRun: boolean;
  vcpus: number;
  memory: number;
  env: NodeJS.ProcessEnv;
  cwd: string;
}

export interface CommandOutcome {
  human: string;
  json: unknown;
  /** Set when the command's answer is "no" (exit 1) after printing its result. */
  failed?: Error;
}

export function defaultCacheDir(env: NodeJS.ProcessEnv): string {
  return join(env.XDG_CACHE_HOME || join(env.HOME || homedir(), '.cache'), 'fbxen');
}

function sourceDateEpoch(env: NodeJS.ProcessEnv): number | undefined {
  const v = env.SOURCE_DATE_EPOCH;
  if (v === undefined || v === '') return undefined;
  if (!/^\d{1,12}$/.test(v)) throw new InputError(`SOURCE_DATE_EPOCH=${v} is not a number of seconds`, { hint: 'unset it or give seconds since 1970, e.g. 1717200000' });
  return Number(v);
}

export function toBuildRequest(r: BuildCommandRequest): BuildRequest {
  const where = r.dist ? resolveDist(r.dist, r.cwd) : undefined;
  if (r.releaseName !== undefined && r.dist === undefined) {
    throw new InputError('--release-name names the sets of --dist; with --release the release is already named', { hint: 'drop --release-name, or give --dist DIR with it' });
  }
  const named = r.release ?? r.releaseName;
  const name = r.name ?? (named ? `freebsd-${named}-${r.arch}` : `freebsd-${r.arch}`);
  return {
    release: r.release,
    releaseName: r.releaseName,
    arch: r.arch,
    mirror: r.mirror,
    dist: where,
    name,
    outDir: resolve(r.cwd, r.out),
    formats: r.format as OutputFormatName[],
    fsSize: r.size,
    diskSize: r.diskSize,
    swapSize: r.swap,
    uefi: r.uefi,
    hostname: r.hostname ?? name.toLowerCase().replace(/[^a-z0-9-]/g, '-').replace(/^-+|-+$/g, '').slice(0, 63),
    overlay: r.overlay ? resolve(r.cwd, r.overlay) : undefined,
    allowNonXenKernel: r.allowNonXenKernel,
    cacheDir: r.cacheDir ? resolve(r.cwd, r.cacheDir) : defaultCacheDir(r.env),
    useCache: r.cache,
    xzDecoder: resolveXzDecoder(r.xzDecoder, r.env),
    sourceDateEpoch: sourceDateEpoch(r.env),
    templatesDir: join(PACKAGE_ROOT, 'templates'),
    guestDir: join(PACKAGE_ROOT, 'guest'),
    vcpus: r.vcpus,
    memoryMiB: r.memory,
  };
}

function resolveDist(dist: string, cwd: string): string {
  return /^https?:\/\//i.test(dist) ? dist : resolve(cwd, dist);
}

/** The exact plan: what would be read, run and written. Nothing is fetched or created. */
export function renderPlan(req: BuildRequest): { text: string; json: unknown } {
  const origin = req.dist ?? mirrorDirectory(req.mirror, req.release ?? '', req.arch);
  const remote = /^https?:\/\//.test(origin);
  const at = (f: string) => (remote ? `${origin.replace(/\/?$/, '/')}${f}` : join(origin, f));
  const raw = join(req.outDir, `${req.name}.raw`);
  // xz reads local files: the --dist files, or the verified copies in the download cache.
  const local = (s: string) => (remote ? join(req.cacheDir, 'dist', `<sha256 of ${s}.txz>.txz`) : at(`${s}.txz`));
  const decode = (s: string) => decodeCommand(req.xzDecoder, local(s));
  const setTar = (s: string) => join(req.cacheDir, 'sets', `<sha256 of ${s}.txz>.tar`);
  const named = req.release ?? req.releaseName;
  const commands = [
    ...(remote ? [`download ${at('MANIFEST')}`, `download ${at('base.txz')} -> ${join(req.cacheDir, 'dist', '<sha256>.txz')} (resumable, verified)`, `download ${at('kernel.txz')} -> ${join(req.cacheDir, 'dist', '<sha256>.txz')}`] : [`read ${at('MANIFEST')}`, `sha256 ${at('base.txz')} and ${at('kernel.txz')} against MANIFEST`]),
    ...(req.release
      ? []
      : [
          `${formatCommand(...decode('base'))} | fbxen tar reader, up to bin/freebsd-version: the release (USERLAND_VERSION), checked before anything is written; ${req.releaseName ? `it must agree with --release-name ${req.releaseName} when it names one` : 'sets without it are refused (name them with --release-name)'}`,
        ]),
    `${formatCommand('xz', ['--robot', '--list', local('base')])} (and kernel)   (sizes, unless cached)`,
    `${formatCommand(...decode('base'))} | fbxen tar reader -> fbxen UFS2 writer into partition rootfs of ${raw}, lane 0${req.useCache ? `   (copy kept in ${setTar('base')})` : ''}`,
    `${formatCommand('nice', ['-n', '10', ...decode('kernel').flat()])} | fbxen tar reader -> the same UFS2 writer, lane 1 (its own room at the start of the data area)   (at the same time, below the base set's decoder)${req.useCache ? `   (copy kept in ${setTar('kernel')})` : ''}`,
    'write protective MBR (boot code from /boot/pmbr), GPT, /boot/gptboot into freebsd-boot (as soon as base.txz has given them)',
    `write templates (templates/files.yaml of fbxen)${req.overlay ? ` and overlay ${req.overlay}` : ''} into the same file system`,
    `check kern_conf of /boot/kernel/kernel for options XENHVM and device xenpci${req.allowNonXenKernel ? ' (--allow-non-xen-kernel: reported, not refused)' : ' (known only once kernel.txz is read: a kernel without them fails the build then; this plan cannot promise it)'}`,
    ...(req.uefi ? ['mkfs.fat + mtools: ESP with /boot/loader.efi as EFI/BOOT/BOOT*.EFI'] : []),
    ...req.formats
      .filter((f) => f !== 'raw')
      .map((f) => `fbxen ${f} writer: ${raw} -> ${join(req.outDir, `${req.name}.${OUTPUT_FORMATS[f].extension}`)}`),
  ];
  const outputs = [...req.formats.map((f) => join(req.outDir, `${req.name}.${OUTPUT_FORMATS[f].extension}`)), join(req.outDir, 'build.json')];
  const text = [
    'fbxen build plan (dry run: nothing is fetched, run or written)',
    `image: ${req.name} (${named ?? 'release from the sets'}, ${req.arch})`,
    `sets: ${origin}`,
    `disk: ${req.diskSize ? formatBytes(req.diskSize) : '6 GiB or what the content needs'}; swap ${formatBytes(req.swapSize)}; root file system ${req.fsSize ? formatBytes(req.fsSize) : 'content + headroom'}${req.uefi ? '; ESP' : ''}`,
    'steps:',
    ...commands.map((c, i) => `  ${i + 1}. ${c}`),
    'outputs (written under temporary names, renamed when complete):',
    ...outputs.map((o) => `  ${o}`),
  ].join('\n');
  return { text: `${text}\n`, json: { dryRun: true, name: req.name, release: named ?? null, arch: req.arch, sets: origin, steps: commands, outputs } };
}

async function firstDifference(a: string, b: string): Promise<number | undefined> {
  const [fa, fb] = [await open(a), await open(b)];
  try {
    const [sa, sb] = [(await fa.stat()).size, (await fb.stat()).size];
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let pos = 0; pos < Math.max(sa, sb); pos += ba.length) {
      const [ra, rb] = [await fa.read(ba, 0, ba.length, pos), await fb.read(bb, 0, bb.length, pos)];
      const n = Math.max(ra.bytesRead, rb.bytesRead);
      for (let i = 0; i < n; i++) if (ba[i] !== bb[i] || i >= ra.bytesRead || i >= rb.bytesRead) return pos + i;
    }
    return undefined;
  } finally {
    await fa.close();
    await fb.close();
  }
}

function humanSummary(record: BuildRecord): string {
  const lines = [
    `built ${record.name}: FreeBSD ${record.release} ${record.arch}, kernel ${record.kernel.ident ?? '(no ident)'} with ${record.kernel.xenOptions.join(', ') || 'no Xen options'}`,
    `  root file system: ${formatBytes(record.filesystem.sizeBytes)} UFS2 (${record.entries} entries), disk ${formatBytes(record.options.diskSize as number)}`,
    ...record.outputs.map((o) => `  ${o.path}  ${formatBytes(o.size)}  sha256 ${o.sha256}`),
    `  ${join(dirname(record.outputs[0]!.path), 'build.json')}`,
  ];
  return `${lines.join('\n')}\n`;
}

export async function buildCommand(r: BuildCommandRequest, deps: { runner: Runner; progress: Progress; signal: AbortSignal; cleanup: CleanupStack }): Promise<CommandOutcome> {
  const req = toBuildRequest(r);
  if (r.dryRun) {
    // A plan is a promise: what the build would refuse up front, the plan refuses too.
    const named = req.release ?? req.releaseName;
    if (named) checkSupported(parseRelease(named.replace(/-p\d+$/, '')), req.arch);
    const plan = renderPlan(req);
    return { human: plan.text, json: plan.json };
  }
  const tools = await toolVersions(deps.runner, req.xzDecoder);
  const first = await build(req, { ...deps, toolVersions: tools });
  if (!r.checkReproducible) return { human: humanSummary(first.record), json: first.record };

  const secondDir = join(req.outDir, `.fbxen-reproducible-${process.pid}`);
  deps.cleanup.push(`remove ${secondDir}`, () => rm(secondDir, { recursive: true, force: true }));
  const second = await build({ ...req, outDir: secondDir }, { ...deps, toolVersions: tools });
  const comparisons = [];
  for (const out of first.record.outputs) {
    const other = second.record.outputs.find((o) => o.format === out.format)!;
    const same = other.sha256 === out.sha256;
    comparisons.push({ format: out.format, sha256: [out.sha256, other.sha256], identical: same, firstDifference: same ? null : ((await firstDifference(out.path, other.path)) ?? null) });
  }
  await rm(secondDir, { recursive: true, force: true });
  const bad = comparisons.filter((c) => !c.identical);
  const human = `${humanSummary(first.record)}reproducible: ${bad.length === 0 ? 'yes, a second build gave identical bytes for every output' : `NO: ${bad.map((c) => `${c.format} differs at byte ${c.firstDifference}`).join('; ')}`}\n`;
  return {
    human,
    json: { ...first.record, reproducible: { identical: bad.length === 0, comparisons } },
    ...(bad.length ? { failed: new CheckFailedError('the two builds differ', { hint: 'report this with build.json: the same inputs must give the same bytes' }) } : {}),
  };
}

async function toolVersions(runner: Runner, xzDecoder: XzDecoder): Promise<Record<string, string>> {
  const out: Record<string, string> = { fbxen: '0.1.0', node: process.version };
  const first = async (file: string, args: string[]) => (await runner.run(file, args)).stdout.split('\n')[0]!.trim();
  out.xz = await first('xz', ['--version']);
  // 7zz prints an empty line, then its banner: "7-Zip (z) 26.02 (x64) : Copyright ..."
  if (xzDecoder === '7zz') out['7zz'] = (await runner.run('7zz', ['i'])).stdout.split('\n').find((l) => l.startsWith('7-Zip'))?.split(' : ')[0]?.trim() ?? 'unknown';
  return out;
}

