/**
 * The boot request checked and turned into what the boot flow needs, without touching the host: the image
 * (format from its bytes), the guest as the toolstack accepts it, the run id and directory, the CD. Runs
 * for --dry-run and `config xl` too: a plan never promises what the run refuses. Also the --dry-run plan.
 */
import { stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError, InputError } from '../errors.js';
import { formatCommand } from '../exec/runner.js';
import { xorrisoArgs } from '../iso/fbxen-cd.js';
import { newRunId, runArtifactPaths, type RunArtifacts } from '../run/artifacts.js';
import type { GuestSpec, Toolstack } from '../toolstack/types.js';
import { NAME_PATTERN } from '../util/names.js';
import { defaultDomainName, inspectImage, requireImageFor, type ImageInfo } from './image.js';
import { chooseKernel, kernelPlanLines, type KernelChoice } from './kernel-choice.js';
import { readStandinGuest, standinPlanLines, type StandinGuest } from './standin-guest.js';
import type { BootRequestBase } from './types.js';

export interface BootRequest extends BootRequestBase {
  toolstack: 'xl' | 'xapi';
  /** Unset: fbxen-<image base name>. */
  name?: string | undefined;
  /** xl: the bridge (default xenbr0). */
  bridge?: string | undefined;
  /** Seconds a clean shutdown may take before the domain is destroyed. */
  graceSec?: number | undefined;
  /** xl on another dom0: --host ssh://USER@HOST[:PORT] and how to trust and log in to it (unset: this machine) */
  host?: { url: string; knownHosts?: string | undefined; identity?: string | undefined } | undefined;
  /** --toolstack xapi: the pool's network and SR, and how to trust it (the URL and credentials come from FBXEN_XAPI_*) */
  xapi?: { network?: string | undefined; sr?: string | undefined; caFile?: string | undefined; insecure: boolean; insecureHttp?: boolean | undefined } | undefined;
}

export interface PreparedBoot {
  image: ImageInfo;
  /** as the toolstack accepts it (uuid and mac filled) */
  guest: GuestSpec;
  run: string;
  artifacts: RunArtifacts;
  cd: { kind: 'fbxen'; path: string } | { kind: 'iso'; path: string } | { kind: 'empty' };
  /** the run id the collector's frame must carry (the fbxen CD's), or undefined when any run's newest frame counts */
  expectRun: string | undefined;
  /** --type pvh: the kernel, checked, and its environment (kernel-choice.ts) */
  kernel?: KernelChoice | undefined;
  /** TEST-ONLY: the stand-in guest FBXEN_TEST_STANDIN_GUEST names, booted instead of the kernel (standin-guest.ts) */
  standin?: StandinGuest | undefined;
}

export async function prepareBoot(req: BootRequest, ts: Toolstack, deps: { cwd: string; now?: (() => Date) | undefined; env?: NodeJS.ProcessEnv | undefined }): Promise<PreparedBoot> {
  const image = await inspectImage(req.image, deps.cwd);
  requireImageFor(ts.name, image);
  const name = req.name || defaultDomainName(image); // '' too: a name left empty in the config file
  const run = req.runId ?? newRunId(deps.now?.() ?? new Date());
  // An invalid name is refused by ts.prepare with the full explanation; keep the path harmless until then.
  const artifacts = runArtifactPaths({ root: req.artifactsRoot, name: NAME_PATTERN.test(name) ? name : 'invalid-name', run, cwd: deps.cwd, configFile: ts.configFile });
  if (req.iso !== undefined && req.emptyCdrom) throw new InputError('--iso and --empty-cdrom exclude each other', { hint: 'give one of them, or neither for the fbxen CD' });
  let cd: PreparedBoot['cd'];
  if (req.emptyCdrom) cd = { kind: 'empty' };
  else if (req.iso !== undefined) {
    const iso = resolve(deps.cwd, req.iso);
    const st = await stat(iso).catch(() => undefined);
    // No such file: the name of an ISO the toolstack has (XAPI's ISO libraries), which it looks up at create.
    if (!st?.isFile() && ts.capabilities.isoByName) cd = { kind: 'iso', path: req.iso };
    else if (!st?.isFile()) throw new InputError(`ISO ${iso} does not exist`, { hint: 'pass an existing ISO image with --iso, or leave it out to get the fbxen CD' });
    else cd = { kind: 'iso', path: iso };
  } else cd = { kind: 'fbxen', path: artifacts.cdPath };

  const arch = image.build?.arch === 'amd64' || image.build?.arch === 'i386' ? image.build.arch : undefined;
  const release = image.build?.release && /^[A-Za-z0-9._-]{1,40}$/.test(image.build.release) ? image.build.release : undefined;
  const type = req.type ?? 'hvm';
  let kernel: KernelChoice | undefined;
  const standin = await readStandinGuest(deps.env ?? {}, { type, toolstack: ts.name, kernel: req.kernel, kernelEnv: req.kernelEnv }, artifacts.dir, deps.cwd);
  if (type === 'pvh' && !standin) {
    if (!ts.capabilities.pvh) throw new InputError(`--toolstack ${ts.name} cannot create PVH guests`, { hint: 'boot PVH with --toolstack xl, or drop --type pvh (docs/xapi.md, "PVH", says why XAPI cannot)' });
    kernel = await chooseKernel(req, image.path, artifacts.dir, deps.cwd);
  }
  const wanted: GuestSpec = {
    name,
    type,
    ...(kernel ? { kernel: kernel.runPath, cmdline: kernel.cmdline } : {}),
    ...(standin ? { kernel: standin.kernel.runPath, cmdline: standin.cmdline, standin: { ramdisk: standin.ramdisk.runPath, vif: standin.vif } } : {}),
    ...(arch ? { arch } : {}),
    ...(release ? { release } : {}),
    vcpus: req.vcpus,
    memoryMiB: req.memoryMiB,
    image: { path: image.path, format: image.format, size: image.size, virtualSize: image.virtualSize ?? image.size },
    cdrom: cd.kind === 'empty' ? { kind: 'empty' } : { kind: 'iso', path: cd.path },
    ...(req.bridge !== undefined ? { network: req.bridge } : {}),
    // XAPI: the pool's network and SR by name or uuid (unset: the pool's defaults)
    ...(req.xapi?.network !== undefined ? { network: req.xapi.network } : {}),
    ...(req.xapi?.sr !== undefined ? { storage: req.xapi.sr } : {}),
  };
  let guest: GuestSpec;
  try {
    guest = ts.prepare(wanted);
  } catch (err) {
    throw cd.kind === 'fbxen' ? artifactsAtFault(err, artifacts.root, ts.configFile) : err;
  }
  return { image, guest, run, artifacts, cd, expectRun: cd.kind === 'fbxen' ? run : undefined, ...(kernel ? { kernel } : {}), ...(standin ? { standin } : {}) };
}

/** The fbxen CD's path lands in the toolstack's config: say that the artifacts directory is at fault, not a "cdrom" setting. */
function artifactsAtFault(err: unknown, root: string, configFile: string): unknown {
  if (!(err instanceof ConfigError)) return err;
  const issue = err.issues?.find((i) => i.startsWith('cdrom.path:') || i.startsWith('pvh.kernel:'));
  if (!issue) return err;
  const m = / is not allowed(?: \((.*)\))?; use (.*)$/.exec(issue);
  return new ConfigError(`the artifacts directory ${JSON.stringify(root)} cannot appear in ${configFile}${m?.[1] ? ` (${m[1]})` : ''}`, [], {
    hint: `pass --artifacts a directory whose path uses only ${m?.[2] ?? 'plain characters'}`,
  });
}

/** The exact plan: files, commands, waits, in order. `--dry-run` prints it; goldens pin it. */
/** `netLine`: the netfront round trip as network-check.ts planBootNetwork says it. */
export async function renderBootPlan(p: PreparedBoot, req: BootRequest, ts: Toolstack, netLine: string): Promise<string> {
  const a = p.artifacts;
  const g = p.guest;
  const steps: string[] = [
    ...(await ts.plan({ step: 'preflight', guest: g })),
    `write ${a.configPath}, ${a.runJson}; point ${join(a.root, g.name, 'latest')} at ${p.run}`,
    netLine,
    p.cd.kind === 'fbxen'
      ? `${formatCommand('xorriso', xorrisoArgs('<staging: fbxen/run fbxen/phase fbxen/collect>', a.cdPath, 0).map((x) => (x === '=0' ? '=NOW' : x === '1970010100000000' ? 'NOW_AS_YYYYMMDDhhmmss00' : x)))}`
      : `(no fbxen CD: ${p.cd.kind === 'iso' ? 'the given ISO' : 'an empty drive'}; the image must carry the collector)`,
    ...(p.kernel ? [`copy ${p.kernel.from} to ${p.kernel.runPath} (read-only; its sha256 checked again)`] : []),
    ...(p.standin ? [`copy the stand-in's kernel and ramdisk to ${p.standin.kernel.runPath}, ${p.standin.ramdisk.runPath} (read-only; sha256 checked again)`] : []),
    ...(await ts.plan({ step: 'stage', files: { image: g.image.path, ...(p.cd.kind !== 'empty' ? { cd: p.cd.path } : {}), ...(p.kernel ? { kernel: p.kernel.runPath } : {}), ...(p.standin ? { kernel: p.standin.kernel.runPath, ramdisk: p.standin.ramdisk.runPath } : {}) } })),
    ...(await ts.plan({ step: 'create', guest: g, runDir: a.dir, consoleLog: a.consoleLog })),
    `wait up to ${req.timeoutSec} s for the FBXEN1 frame${p.expectRun ? ` of run ${p.expectRun}` : ''} in ${a.consoleLog}`,
    req.verify ? `verify the bundle → ${a.reportJson}, ${a.reportJunit}` : `(no --verify: run \`fbxen verify --domain ${g.name}\` next)`,
    ...(await ts.plan({ step: 'stop', guest: g, keep: req.keep, graceSec: req.graceSec ?? 60 })),
  ];
  const lines = [
    `# fbxen boot --toolstack ${ts.name} --dry-run: nothing was created or run`,
    `run        ${p.run}`,
    `domain     ${g.name}${g.uuid ? ` (uuid ${g.uuid}${g.mac ? `, mac ${g.mac}` : ''})` : ''}`,
    `image      ${p.image.path} (${p.image.format})`,
    `cdrom      ${p.cd.kind === 'fbxen' ? `fbxen CD with run ${p.run} and the collector` : p.cd.kind === 'iso' ? p.cd.path : 'empty drive'}${g.type === 'pvh' ? ' as the read-only PV disk xvdb (guest: xbd1, /dev/iso9660/FBXEN; PVH has no emulated CD)' : ''}`,
    ...(g.type === 'pvh' ? [`type       pvh (Xen enters the kernel at its PVH entry point; no firmware, no device model; console: Xen PV console xc0)`] : []),
    ...(p.kernel ? kernelPlanLines(p.kernel) : []),
    ...(p.standin ? standinPlanLines(p.standin) : []),
    `artifacts  ${a.dir}/`,
    '',
    '## steps',
    ...steps.map((s, i) => `${i + 1}. ${s}`),
    '',
    `## ${a.configPath}`,
    ...(await ts.plan({ step: 'config', guest: g })),
    '',
  ];
  return lines.join('\n');
}
