/**
 * `fbxen boot --toolstack xl`: validate → artifacts → preflight → fbxen CD → `xl create -c` with the
 * serial console captured to console.log from the first byte → wait for the collector's frame → (verify)
 * → shut down, or keep. Whatever goes wrong, the domain this run created is destroyed (never another),
 * and the config, console log and transcript stay in the run directory.
 */
import { access, constants, readFile, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { ConfigError, EnvironmentError, FbxenError, InputError, InterruptedError, TimeoutError, ToolstackError } from '../errors.js';
import { formatCommand, type Runner } from '../exec/runner.js';
import type { Progress } from '../progress.js';
import type { CleanupStack } from '../util/cleanup.js';
import { writeFileAtomic } from '../util/atomic.js';
import { defaultCollectorPath, makeFbxenCd, xorrisoArgs } from '../iso/fbxen-cd.js';
import { describeBadCharacter, renderXlConfig, macForName, uuidForName, validateXlGuestSpec, XL_PATH_PATTERN, type XlGuestSpec } from '../toolstack/xl/xl-config.js';
import { XlToolstack, type ConsoleAttachment } from '../toolstack/xl/xl-toolstack.js';
import { createRunArtifacts, verifyIntoArtifacts, newRunId, runArtifactPaths, transcribingRunner, writeRunRecord, type RunArtifacts, type RunRecord } from './artifacts.js';
import { defaultDomainName, inspectImage, requireImageFor, type ImageInfo } from './image.js';
import type { BootRequestBase, BootResult, RunOutcome } from './types.js';
import { waitForFrame } from './wait-for-frame.js';
import { sleep } from '../util/sleep.js';
import { NAME_PATTERN } from '../util/names.js';
import { ConsoleLogFile, consoleLogLimit } from '../run/console-log.js';
import type { CoreDeps } from '../deps.js';

export interface XlBootRequest extends BootRequestBase {
  name?: string | undefined;
  bridge: string;
  /** Seconds `xl shutdown -w` may take before `xl destroy`. */
  graceSec?: number | undefined;
}

export interface XlBootDeps extends CoreDeps {
  /** Default: guest/fbxen-collect in the package. */
  collectorPath?: string;
  /** Where bridges are looked up (default /sys/class/net; FBXEN_SYS_CLASS_NET overrides for containers). */
  sysClassNet?: string;
  /** Seconds since the epoch for the CD dates (default: now). */
  now?: () => Date;
  pollMs?: number;
}

/** Memory the hypervisor needs per guest beyond its RAM (page tables, QEMU's stub); a conservative margin. */
const OVERHEAD_MIB = 64;
/** What fbxen assumes dom0 keeps when xl balloons it down for a guest. */
const DOM0_FLOOR_MIB = 1024;
const CREATE_TIMEOUT_MS = 120_000;

interface Prepared {
  image: ImageInfo;
  spec: XlGuestSpec;
  config: string;
  run: string;
  artifacts: RunArtifacts;
  cd: { kind: 'fbxen'; path: string } | { kind: 'iso'; path: string } | { kind: 'empty' };
  expectRun: string | undefined;
}

/** Checks the request and derives everything that does not need the host: no file is created. */
export async function prepareXlBoot(req: XlBootRequest, deps: Pick<XlBootDeps, 'cwd' | 'now'>): Promise<Prepared> {
  // Everything here runs for --dry-run and `config xl` too: a plan never promises what the run refuses.
  const image = await inspectImage(req.image, deps.cwd);
  requireImageFor('xl', image);
  const name = req.name ?? defaultDomainName(image);
  const run = req.runId ?? newRunId(deps.now?.() ?? new Date());
  const artifacts = runArtifactPaths({ root: req.artifactsRoot, name: safeDirName(name), run, cwd: deps.cwd });
  if (req.iso !== undefined && req.emptyCdrom) throw new InputError('--iso and --empty-cdrom exclude each other', { hint: 'give one of them, or neither for the fbxen CD' });
  let cd: Prepared['cd'];
  if (req.emptyCdrom) cd = { kind: 'empty' };
  else if (req.iso !== undefined) {
    const iso = resolve(deps.cwd, req.iso);
    const st = await stat(iso).catch(() => undefined);
    if (!st?.isFile()) throw new InputError(`ISO ${iso} does not exist`, { hint: 'pass an existing ISO image with --iso, or leave it out to get the fbxen CD' });
    cd = { kind: 'iso', path: iso };
  } else {
    cd = { kind: 'fbxen', path: artifacts.cdPath };
    // The CD path lands in xl.cfg: say that it is the artifacts directory at fault, not a "cdrom" setting.
    if (!XL_PATH_PATTERN.test(cd.path)) {
      const bad = describeBadCharacter(cd.path, /^[A-Za-z0-9._+@%~\/ -]$/);
      throw new ConfigError(`the artifacts directory ${JSON.stringify(artifacts.root)} cannot appear in an xl.cfg${bad ? ` (${bad})` : ''}`, [], {
        hint: 'pass --artifacts a directory whose path uses only A-Z a-z 0-9 . _ + @ % ~ / - and inner spaces',
      });
    }
  }

  const arch = image.build?.arch === 'amd64' || image.build?.arch === 'i386' ? image.build.arch : undefined;
  const release = image.build?.release && /^[A-Za-z0-9._-]{1,40}$/.test(image.build.release) ? image.build.release : undefined;
  const spec = validateXlGuestSpec({
    name,
    uuid: uuidForName(name),
    mac: macForName(name),
    ...(arch ? { arch } : {}),
    ...(release ? { release } : {}),
    vcpus: req.vcpus,
    memoryMiB: req.memoryMiB,
    image: { path: image.path, format: image.format },
    cdrom: cd.kind === 'empty' ? { kind: 'empty' } : { kind: 'iso', path: cd.path },
    bridge: req.bridge,
  });
  return { image, spec, config: renderXlConfig(spec), run, artifacts, cd, expectRun: cd.kind === 'fbxen' ? run : undefined };
}

/** The directory name for a domain: validated names are already safe; this only guards the type. */
function safeDirName(name: string): string {
  if (!NAME_PATTERN.test(name)) {
    // validateXlGuestSpec will reject it with the full explanation; keep the path harmless until then.
    return 'invalid-name';
  }
  return name;
}

/** The exact plan: files, commands, waits, in order. `--dry-run` prints it; goldens pin it. */
export function renderXlPlan(p: Prepared, req: XlBootRequest, xl = 'xl'): string {
  const a = p.artifacts;
  const cmd = (args: string[]) => formatCommand(xl, args);
  const grace = req.graceSec ?? 60;
  const lines = [
    `# fbxen boot --toolstack xl --dry-run: nothing was created or run`,
    `run        ${p.run}`,
    `domain     ${p.spec.name} (uuid ${p.spec.uuid}, mac ${p.spec.mac})`,
    `image      ${p.image.path} (${p.image.format})`,
    `cdrom      ${p.cd.kind === 'fbxen' ? `fbxen CD with run ${p.run} and the collector` : p.cd.kind === 'iso' ? p.cd.path : 'empty drive'}`,
    `artifacts  ${a.dir}/`,
    '',
    '## steps',
    `1. preflight: ${cmd(['info'])}   (dom0 reachable; free_memory, plus what autoballoon may take from dom0, >= ${p.spec.memoryMiB + OVERHEAD_MIB} MiB)`,
    `2. preflight: bridge ${p.spec.bridge} exists (/sys/class/net/${p.spec.bridge}/bridge)`,
    `3. preflight: ${cmd(['domid', p.spec.name])}   (must fail: fbxen never reuses a domain it did not create)`,
    `4. write ${a.configPath}, ${a.runJson}; point ${join(a.root, p.spec.name, 'latest')} at ${p.run}`,
    p.cd.kind === 'fbxen'
      ? `5. ${formatCommand('xorriso', xorrisoArgs('<staging: fbxen/run fbxen/phase fbxen/collect>', a.cdPath, 0).map((x) => (x === '=0' ? '=NOW' : x === '1970010100000000' ? 'NOW_AS_YYYYMMDDhhmmss00' : x)))}`
      : `5. (no fbxen CD: ${p.cd.kind === 'iso' ? 'the given ISO' : 'an empty drive'}; the image must carry the collector)`,
    `6. ${cmd(['create', '-c', a.configPath])}   (created paused, console attached, then unpaused; console → ${a.consoleLog})`,
    `7. ${cmd(['domid', p.spec.name])}, then ${cmd(['list', '-l', 'DOMID'])}   (the domid this run created, confirmed by uuid ${p.spec.uuid})`,
    `8. wait up to ${req.timeoutSec} s for the FBXEN1 frame${p.expectRun ? ` of run ${p.expectRun}` : ''} in ${a.consoleLog}`,
    req.verify ? `9. verify the bundle → ${a.reportJson}, ${a.reportJunit}` : `9. (no --verify: run \`fbxen verify --domain ${p.spec.name}\` next)`,
    req.keep
      ? `10. --keep: leave domain ${p.spec.name} running (destroy it later: ${cmd(['destroy', p.spec.name])})`
      : `10. ${cmd(['shutdown', '-w', 'DOMID'])}   (up to ${grace} s), then ${cmd(['destroy', 'DOMID'])}`,
    '',
    `## ${a.configPath}`,
    p.config.trimEnd(),
    '',
  ];
  return lines.join('\n');
}

export async function bootWithXl(req: XlBootRequest, deps: XlBootDeps): Promise<BootResult> {
  const p = await prepareXlBoot(req, deps);
  const a = p.artifacts;
  const logLimit = consoleLogLimit(deps.env);
  if (req.dryRun) {
    return { run: p.run, name: p.spec.name, toolstack: 'xl', artifactsDir: a.dir, consoleLog: a.consoleLog, domain: { id: '', kept: false }, planText: renderXlPlan(p, req) };
  }

  const progress = deps.progress;
  await createRunArtifacts({ root: a.root, name: a.name, run: p.run, cwd: deps.cwd });
  const runner = transcribingRunner(deps.runner, a.transcriptLog);
  const xl = new XlToolstack(runner, { env: deps.env });
  const record: RunRecord = { run: p.run, name: p.spec.name, toolstack: 'xl', domid: null, image: p.image.path, started: new Date().toISOString(), finished: null, outcome: 'running', frameRun: p.expectRun ?? null };
  await writeRunRecord(a, record);
  await writeFileAtomic(a.configPath, p.config);

  let domid: number | undefined;
  let attachment: ConsoleAttachment | undefined;
  let consoleFile: ConsoleLogFile | undefined;
  let forgetDestroy: (() => void) | undefined;

  const destroyOurs = async () => {
    if (domid !== undefined) await xl.destroy(domid);
    attachment?.detach();
  };

  try {
    await progress.step('Preflight: xl, bridge, memory, name', async () => {
      await access(p.image.path, constants.R_OK).catch((err: unknown) => {
        throw new EnvironmentError(`image ${p.image.path} is not readable: ${(err as Error).message}`, { hint: 'run fbxen as root on the dom0, or fix the file permissions' });
      });
      const info = await xl.info();
      const need = p.spec.memoryMiB + OVERHEAD_MIB;
      if (info.free_memory < need) {
        // xl can take memory back from dom0 (autoballoon) when dom0 was not given a fixed dom0_mem.
        const balloon = await autoballoonEnabled(deps.env.FBXEN_XL_CONF ?? '/etc/xen/xl.conf', info.xen_commandline);
        const dom0 = balloon ? (await xl.list().catch(() => [])).find((r) => r.domid === 0) : undefined;
        const fromDom0 = dom0 ? Math.max(0, dom0.memMiB - DOM0_FLOOR_MIB) : 0;
        if (info.free_memory + fromDom0 < need) {
          throw new EnvironmentError(
            `the host has ${info.free_memory} MiB free${fromDom0 ? ` (+${fromDom0} MiB xl could balloon out of dom0)` : ''}; the guest needs ${p.spec.memoryMiB} MiB (+${OVERHEAD_MIB} MiB overhead)`,
            { hint: 'lower --memory, stop other guests, or give dom0 less memory (dom0_mem= on the Xen command line)' },
          );
        }
        progress.info(`free memory ${info.free_memory} MiB: xl will balloon dom0 down to make room`);
      }
      const netRoot = deps.sysClassNet ?? deps.env.FBXEN_SYS_CLASS_NET ?? '/sys/class/net';
      const isBridge = await stat(join(netRoot, p.spec.bridge, 'bridge')).then((s) => s.isDirectory(), () => false);
      if (!isBridge) {
        throw new EnvironmentError(`bridge ${p.spec.bridge} does not exist on this host`, {
          hint: `create it (e.g. \`ip link add ${p.spec.bridge} type bridge\`), or name an existing one with --bridge (\`ip -br link show type bridge\` lists them)`,
        });
      }
      const existing = await xl.domid(p.spec.name);
      if (existing !== undefined) {
        throw new ToolstackError(`a domain named ${p.spec.name} already exists (domid ${existing}); fbxen only touches domains it created`, {
          hint: `choose another --name, or remove the old one yourself: xl destroy ${p.spec.name}`,
        });
      }
    });

    if (p.cd.kind === 'fbxen') {
      const cdPath = p.cd.path;
      await progress.step('Make the fbxen CD', () =>
        makeFbxenCd({ runId: p.run, phase: 'boot', collectorPath: deps.collectorPath ?? defaultCollectorPath(), outPath: cdPath, timestamp: Math.floor((deps.now?.() ?? new Date()).getTime() / 1000) }, runner),
      );
    }

    await progress.step(`Create ${p.spec.name} with its console captured`, async (handle) => {
      // Bounded: a guest printing forever must not fill this host's disk (docs/boot-xl.md).
      consoleFile = new ConsoleLogFile(a.consoleLog, logLimit);
      const att = xl.createWithConsole(a.configPath);
      attachment = att;
      att.stdout.pipe(consoleFile);
      // Registered before the domid is known: a signal now must still find and destroy what we created.
      forgetDestroy = deps.cleanup.push(`destroy domain ${p.spec.name}`, async () => {
        domid ??= await xl.domid(p.spec.name).catch(() => undefined);
        await destroyOurs();
      });
      let createFailed: unknown;
      let createExited = false;
      att.done.then(
        () => (createExited = true),
        (err: unknown) => {
          createExited = true;
          createFailed = err;
        },
      );
      const deadline = Date.now() + CREATE_TIMEOUT_MS;
      for (;;) {
        deps.signal.throwIfAborted();
        if (createFailed !== undefined) {
          // libxl destroys a half-built domain itself; there is nothing of ours to clean up.
          const stderr = (createFailed as { result?: { stderr?: string } }).result?.stderr?.trim() ?? '';
          throw new ToolstackError(`xl create failed${stderr ? `:\n${stderr}` : `: ${(createFailed as Error).message}`}`, {
            hint: `the config is ${a.configPath}; try \`xl create -c ${a.configPath}\` by hand to see the whole error`,
          });
        }
        const id = await xl.domid(p.spec.name);
        if (id !== undefined) {
          // The name was free at preflight; the uuid in `xl list -l` confirms this domain is the one our config made.
          const uuid = (await xl.listLong(id))[0]?.config.c_info.uuid;
          if (uuid !== undefined && uuid !== p.spec.uuid) {
            forgetDestroy?.();
            forgetDestroy = undefined;
            throw new ToolstackError(`domain ${p.spec.name} (domid ${id}) has uuid ${uuid}, not ${p.spec.uuid}: another tool created it meanwhile; fbxen leaves it alone`, {
              hint: 'check `xl list -l`, then boot again with another --name',
            });
          }
          domid = id;
          break;
        }
        if (createExited) {
          await sleep(0); // let a rejection that raced with the exit land before judging
          if (createFailed !== undefined) continue;
          throw new ToolstackError(`xl create exited but no domain named ${p.spec.name} exists`, { hint: `read ${a.consoleLog} and ${a.transcriptLog}` });
        }
        if (Date.now() > deadline) throw new TimeoutError(`xl create did not produce domain ${p.spec.name} within ${CREATE_TIMEOUT_MS / 1000} s`, { hint: 'check `xl list` and the xl logs in /var/log/xen/' });
        await sleep(deps.pollMs ?? 250, deps.signal);
      }
      handle.output(`domid ${domid}`);
      record.domid = String(domid);
      await writeRunRecord(a, record);
    });

    const frame = await progress.step(`Wait for the collector (up to ${req.timeoutSec} s)`, (handle) =>
      waitForFrame(a.consoleLog, p.expectRun, req.timeoutSec * 1000, deps.signal, {
        phase: 'boot',
        ...(deps.pollMs ? { pollMs: deps.pollMs } : {}),
        onStatus: (line) => handle.output(line),
        guestGone: stoppedOr(consoleFile, throttle(2000, async () => {
          const rows = await xl.list().catch(() => undefined);
          if (!rows) return undefined;
          const row = rows.find((r) => r.domid === domid);
          if (!row) return 'went away';
          if (row.state.includes('c')) return 'crashed (kept for inspection by on_crash="preserve" until fbxen destroys it)';
          return undefined;
        })),
      }),
    );

    let report: BootResult['report'];
    let outcome: RunOutcome = 'collected';
    if (req.verify) {
      report = await progress.step('Verify', () => verifyIntoArtifacts(frame.bundle, a, frame.run));
      outcome = 'verified';
    }

    if (req.keep) {
      forgetDestroy?.();
      attachment?.detach();
      outcome = req.verify ? outcome : 'kept';
      progress.info(`domain ${p.spec.name} (domid ${domid}) left running; the console capture stops when fbxen exits (xl console ${domid} reattaches)`);
    } else {
      await progress.step(`Shut down ${p.spec.name}`, async () => {
        const graceMs = (req.graceSec ?? 60) * 1000;
        const clean = await xl.shutdown(domid!, graceMs);
        if (!clean || (await xl.domid(p.spec.name)) !== undefined) await xl.destroy(domid!);
        forgetDestroy?.();
        attachment?.detach();
      });
    }
    await closeConsole(attachment, consoleFile);
    record.finished = new Date().toISOString();
    record.outcome = outcome;
    await writeRunRecord(a, record);
    return {
      run: p.run,
      name: p.spec.name,
      toolstack: 'xl',
      artifactsDir: a.dir,
      consoleLog: a.consoleLog,
      domain: { id: String(domid), kept: req.keep },
      ...(report ? { report } : {}),
    };
  } catch (raw) {
    const err = deps.signal.aborted && deps.signal.reason instanceof InterruptedError ? deps.signal.reason : raw;
    forgetDestroy?.();
    const failures: string[] = [];
    if (forgetDestroy) {
      domid ??= await xl.domid(p.spec.name).catch(() => undefined);
      await destroyOurs().catch((e: unknown) => failures.push(e instanceof Error ? e.message : String(e)));
    }
    await closeConsole(attachment, consoleFile);
    record.finished = new Date().toISOString();
    record.outcome = err instanceof InterruptedError ? 'interrupted' : err instanceof TimeoutError ? 'timeout' : 'failed';
    await writeRunRecord(a, record).catch(() => undefined);
    for (const f of failures) progress.warn(`could not destroy domain ${p.spec.name}: ${f}`);
    progress.warn(`kept for inspection: ${a.configPath}, ${a.consoleLog}, ${a.transcriptLog}`);
    if (err instanceof FbxenError) throw withLogsHint(err, a.dir);
    throw raw;
  }
}

async function closeConsole(att: ConsoleAttachment | undefined, file: ConsoleLogFile | undefined): Promise<void> {
  att?.detach();
  if (att) await Promise.race([att.done.catch(() => undefined), sleep(5000)]);
  if (file && !file.closed) {
    att?.stdout.unpipe(file);
    await new Promise<void>((resolve) => file.end(() => resolve()));
  }
}

/** The error as thrown, with where the run's config and logs are added to its hint (also seen with --quiet). */
function withLogsHint(err: FbxenError, dir: string): FbxenError {
  const where = `config, console log and transcript: ${dir}/`;
  if (!err.hint?.includes(where)) Object.defineProperty(err, 'hint', { value: err.hint ? `${err.hint}\n${where}` : where });
  return err;
}

/**
 * xl.conf `autoballoon`: "on", "off", or "auto" (the default: on unless the Xen command line fixes
 * dom0_mem), per xl.conf(5).
 */
export async function autoballoonEnabled(xlConfPath: string, xenCommandline: string | undefined): Promise<boolean> {
  const text = await readFile(xlConfPath, 'utf8').catch(() => '');
  const m = /^\s*autoballoon\s*=\s*["']?(on|off|auto|1|0)["']?\s*(?:#.*)?$/m.exec(text);
  const mode = m?.[1] ?? 'auto';
  if (mode === 'on' || mode === '1') return true;
  if (mode === 'off' || mode === '0') return false;
  return !/(^|\s)dom0_mem=/.test(xenCommandline ?? '');
}


/** The console log stopped (its limit, a write error): the frame can no longer arrive, so the wait ends now. */
function stoppedOr(file: ConsoleLogFile | undefined, gone: () => Promise<string | undefined>): () => Promise<string | undefined> {
  return async () => file?.stopped ?? gone();
}

function throttle<T>(everyMs: number, fn: () => Promise<T | undefined>): () => Promise<T | undefined> {
  let last = 0;
  return async () => {
    if (Date.now() - last < everyMs) return undefined;
    last = Date.now();
    return fn();
  };
}


