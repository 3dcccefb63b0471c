/**
 * `fbxen boot`, whatever the toolstack: validate → artifacts → preflight → fbxen CD → stage the files on
 * the host → create with the serial console captured to console.log from the first byte → wait for the
 * collector's frame → (verify) → shut down, or keep. Whatever goes wrong (a failure, Ctrl-C, SIGTERM),
 * the domain this run created is destroyed (never another), and the config, console log and transcript
 * stay in the run directory. The toolstack is a Toolstack (src/core/toolstack/types.ts): XlDriver here.
 */
import { appendFileSync } from 'node:fs';
import { access, constants } from 'node:fs/promises';
import { resolve } from 'node:path';
import { EnvironmentError, FbxenError, InterruptedError, TimeoutError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import type { CoreDeps } from '../deps.js';
import { defaultCollectorPath, makeFbxenCd } from '../iso/fbxen-cd.js';
import { DEFAULT_REMOTE_ROOT, formatHostUrl, parseHostUrl, SshSession } from '../exec/ssh.js';
import { createRunArtifacts, newRunId, transcribingRunner, writeRunRecord, type RunRecord } from '../run/artifacts.js';
import { ConsoleLogFile, consoleLogLimit } from '../run/console-log.js';
import type { Created, DomainRef, GuestSpec, Staged, Toolstack } from '../toolstack/types.js';
import type { XapiDriverOptions } from '../toolstack/xapi/driver.js';
import { XlDriver } from '../toolstack/xl/xl-driver.js';
import { throttle } from '../util/throttle.js';
import { verifyIntoArtifacts } from './artifacts.js';
import { copyKernelIntoRun, kernelRunRecord } from './kernel-choice.js';
import { arrangeBootNetwork, guestRanRoundTrip, planBootNetwork, type BootNetwork } from './network-check.js';
import { writeHostKnowledge } from '../net/host-record.js';
import { renderCallPlan } from './call-plan.js';
import { prepareBoot, renderBootPlan, type BootRequest, type PreparedBoot } from './prepare.js';
import { copyStandinIntoRun, STANDIN_LABEL, STANDIN_WARNING, standinRunRecord } from './standin-guest.js';
import type { BootResult, RunOutcome } from './types.js';
import { waitForFrame } from './wait-for-frame.js';

export type { BootRequest };

export interface BootDeps extends CoreDeps {
  /** Default: guest/fbxen-collect in the package. */
  collectorPath?: string;
  /** Where bridges are looked up (default /sys/class/net; FBXEN_SYS_CLASS_NET overrides for containers). */
  sysClassNet?: string;
  /** The CD dates and the run id (default: now). */
  now?: () => Date;
  pollMs?: number;
  /** Tests: stands in for xorriso (writes the CD at outPath). */
  makeCd?: ((opts: { runId: string; outPath: string; timestamp: number }) => Promise<void>) | undefined;
  /** Tests: the XAPI driver's console address and client timings (the simulator). */
  xapi?: Pick<XapiDriverOptions, 'consoleHost' | 'clientOptions'> | undefined;
}

/** Makes the run's toolstack: `log` appends a line to the run's transcript (unset for a plan). */
export type ToolstackFactory = (runner: Runner, run: string, log?: (line: string) => void) => Toolstack;

/**
 * The xl driver of a run, on `runner` (the transcribing one for a run, the plain one for a plan): on this
 * dom0, or on the one `host` names, over one ssh connection (the run's files in FBXEN_REMOTE_ROOT/<run>
 * there, default /var/lib/fbxen/runs). The URL is checked here, before anything runs.
 */
export function xlToolstack(deps: BootDeps, host?: BootRequest['host']): (runner: Runner, run: string) => Toolstack {
  const target = parseHostUrl(host?.url);
  const base = { env: deps.env, sysClassNet: deps.sysClassNet, pollMs: deps.pollMs, info: (line: string) => deps.progress.info(line) };
  if (target.kind === 'local') return (runner) => new XlDriver({ runner, ...base });
  const root = deps.env.FBXEN_REMOTE_ROOT || DEFAULT_REMOTE_ROOT;
  const file = (f: string | undefined) => (f === undefined ? undefined : resolve(deps.cwd, f));
  return (runner, run) => {
    const session = new SshSession(target, { knownHosts: file(host?.knownHosts), identity: file(host?.identity), remoteRoot: root }, { runner, env: deps.env });
    return new XlDriver({ runner, ...base, remote: { session, root, run } });
  };
}

/** `fbxen config xl`: the config boot would write, from the same request, nothing run. */
export async function renderBootConfig(req: BootRequest, deps: Pick<BootDeps, 'cwd' | 'now' | 'env' | 'runner' | 'progress'>): Promise<{ prepared: PreparedBoot; config: string }> {
  const ts = xlToolstack(deps as BootDeps, req.host)(deps.runner, req.runId ?? 'config');
  const prepared = await prepareBoot(req, ts, deps);
  return { prepared, config: `${(await ts.plan({ step: 'config', guest: prepared.guest })).join('\n')}\n` };
}

/** Boots with the toolstack `makeToolstack` gives; see the file comment. */
export async function bootOn(makeToolstack: ToolstackFactory, request: BootRequest, deps: BootDeps, layout?: { calls: true; header: string[] }): Promise<BootResult> {
  // The run id first: a remote driver names the run's directory on the host after it.
  const req = { ...request, runId: request.runId ?? newRunId(deps.now?.() ?? new Date()) };
  const planner = makeToolstack(deps.runner, req.runId);
  const p = await prepareBoot(req, planner, deps);
  const a = p.artifacts;
  const name = p.guest.name;
  const base = { run: p.run, name, toolstack: planner.name, artifactsDir: a.dir, consoleLog: a.consoleLog };
  if (p.standin) deps.progress.warn(STANDIN_WARNING);
  if (req.dryRun) {
    const netLine = planBootNetwork(planner, p.guest, { fbxenCd: p.cd.kind === 'fbxen', env: deps.env });
    return { ...base, domain: { id: '', kept: false }, planText: layout ? await renderCallPlan(p, req, planner, layout.header, netLine) : await renderBootPlan(p, req, planner, netLine) };
  }

  const { progress, signal } = deps;
  const logLimit = consoleLogLimit(deps.env);
  await createRunArtifacts({ root: a.root, name: a.name, run: p.run, cwd: deps.cwd, configFile: planner.configFile });
  const runner = transcribingRunner(deps.runner, a.transcriptLog);
  const ts = makeToolstack(runner, p.run, (line) => {
    // Synchronous: the lines stay in order and are all on disk when the run returns; a failed write never fails the run.
    try {
      appendFileSync(a.transcriptLog, `${new Date().toISOString()} ${line}\n`);
    } catch {
      /* the transcript is best effort */
    }
  });
  const record: RunRecord = { run: p.run, name, toolstack: ts.name, domid: null, image: p.image.path, started: new Date().toISOString(), finished: null, outcome: 'running', frameRun: p.expectRun ?? null, type: p.guest.type, ...(p.kernel ? { kernel: kernelRunRecord(p.kernel) } : {}), ...(p.standin ? { standin: standinRunRecord(p.standin) } : {}) };
  await writeRunRecord(a, record);

  let domain: DomainRef | undefined;
  let created: Created | undefined;
  let consoleFile: ConsoleLogFile | undefined;
  let staged: Staged | undefined;
  let forgetDestroy: (() => void) | undefined;
  let net: BootNetwork | undefined;

  // Only the domain of this run: the one create reported, else the one with this run's name and uuid.
  const destroyOurs = async () => {
    const d = domain ?? (await ts.find(name, p.guest.uuid).catch(() => undefined));
    if (d) await ts.destroy(d);
    await created?.console.detach();
  };

  try {
    await progress.step(`Preflight: ${ts.name}, network, memory, name`, async () => {
      await access(p.image.path, constants.R_OK).catch((err: unknown) => {
        throw new EnvironmentError(`image ${p.image.path} is not readable: ${(err as Error).message}`, { hint: 'run fbxen as root on the dom0, or fix the file permissions' });
      });
      const facts = await ts.preflight(p.guest);
      // A remote dom0 by the URL fbxen reached it at: 'localhost' or its own name would read as this machine.
      record.host = req.host?.url ? formatHostUrl(parseHostUrl(req.host.url)) : facts.host;
    });

    // the round trip's listener on the vif's bridge (network-check.ts), its files onto the CD
    net = await arrangeBootNetwork(ts, p.guest, { fbxenCd: p.cd.kind === 'fbxen', env: deps.env, source: `fbxen boot run ${p.run} (${a.runJson})` });
    await net.keep(a.dir);
    if (p.cd.kind === 'fbxen') {
      const cdPath = p.cd.path;
      const timestamp = Math.floor((deps.now?.() ?? new Date()).getTime() / 1000);
      await progress.step('Make the fbxen CD', () =>
        deps.makeCd ? deps.makeCd({ runId: p.run, outPath: cdPath, timestamp }) : makeFbxenCd({ runId: p.run, phase: 'boot', collectorPath: deps.collectorPath ?? defaultCollectorPath(), outPath: cdPath, timestamp, extraFiles: net?.cdFiles }, runner),
      );
    }

    if (p.kernel) {
      const k = p.kernel;
      await progress.step('Copy the kernel into the run', () => copyKernelIntoRun(k));
    }
    const standin = p.standin;
    if (standin) await progress.step(`Copy the ${STANDIN_LABEL} into the run`, () => copyStandinIntoRun(standin));
    const files = { image: p.image.path, ...(p.cd.kind !== 'empty' ? { cd: p.cd.path } : {}), ...(p.kernel ? { kernel: p.kernel.runPath } : {}), ...(standin ? { kernel: standin.kernel.runPath, ramdisk: standin.ramdisk.runPath } : {}) };
    staged = ts.capabilities.remote ? await progress.step('Copy the image and the CD to the host', () => ts.stage(files, p.run)) : await ts.stage(files, p.run);
    const guest: GuestSpec = { ...p.guest, image: { ...p.guest.image, path: staged.image }, cdrom: staged.cd !== undefined ? { kind: 'iso', path: staged.cd } : p.guest.cdrom, ...(staged.kernel !== undefined ? { kernel: staged.kernel } : {}), ...(standin && staged.ramdisk !== undefined ? { standin: { ramdisk: staged.ramdisk, vif: standin.vif } } : {}) };

    await progress.step(`Create ${name} with its console captured`, async (handle) => {
      // Bounded: a guest printing forever must not fill this host's disk (docs/boot-xl.md).
      consoleFile = new ConsoleLogFile(a.consoleLog, logLimit);
      // Registered before the domain is known: a signal now must still find and destroy what we created.
      forgetDestroy = deps.cleanup.push(`destroy domain ${name}`, destroyOurs);
      created = await ts.create(guest, { runDir: a.dir, console: consoleFile, signal, onDomain: (d) => (domain = d) });
      domain = created.domain;
      handle.output(`${ts.name === 'xl' ? 'domid' : 'VM'} ${domain.id}`);
      record.domid = domain.id;
      // What the toolstack said about where the guest runs (XAPI: pool, host, SR, network, nonce channel).
      if (created.facts) (record as RunRecord & Record<string, unknown>)[ts.name] = created.facts;
      await writeRunRecord(a, record);
    });
    const ours = domain!;
    // Why the guest can no longer write a frame, asked of the toolstack at most every 2 s.
    const guestState = throttle(2000, async () => {
      const s = await ts.state(ours);
      return s === undefined ? 'went away' : s === 'crashed' ? 'crashed (kept for inspection until fbxen destroys it)' : s === 'halted' ? 'halted' : undefined;
    });

    const frame = await progress.step(`Wait for the collector (up to ${req.timeoutSec} s)`, (handle) =>
      waitForFrame(a.consoleLog, p.expectRun, req.timeoutSec * 1000, signal, {
        phase: 'boot',
        ...(deps.pollMs ? { pollMs: deps.pollMs } : {}),
        onStatus: (line) => handle.output(line),
        // The console log stopped (its limit, a write error): the frame can no longer arrive, so the wait ends now.
        guestGone: async () => consoleFile?.stopped ?? guestState(),
      }),
    );

    let report: BootResult['report'];
    let outcome: RunOutcome = 'collected';
    // what the host saw of the round trip, kept in the run for a later `fbxen verify --domain` (host-record.ts)
    const netKnown = await net.knowledge(guestRanRoundTrip(frame.bundle.sections));
    await writeHostKnowledge(a.dir, netKnown);
    if (req.verify) {
      report = await progress.step('Verify', async () =>
        verifyIntoArtifacts(frame.bundle, a, frame.run, {
          // The stand-in replays a recorded bundle: what fbxen booted says nothing about that bundle's boot.
          ...(standin ? { standin: STANDIN_LABEL } : { bootType: { type: p.guest.type, source: `run.json: fbxen boot --type ${p.guest.type}` } }),
          // A stand-in without a vif (its recorded bundle has no xn0): nothing for netfront to weigh.
          net: standin && !standin.vif ? undefined : netKnown,
        }),
      );
      outcome = 'verified';
    }

    if (req.keep) {
      forgetDestroy?.();
      await created!.console.detach();
      outcome = req.verify ? outcome : 'kept';
      progress.info(created!.keepHint);
    } else {
      await progress.step(`Shut down ${name}`, async () => {
        const clean = await ts.shutdown(ours, (req.graceSec ?? 60) * 1000);
        if (!clean || (await ts.find(name)) !== undefined) await ts.destroy(ours);
        forgetDestroy?.();
        await created!.console.detach();
      });
    }
    await closeConsole(created, consoleFile);
    await net.stop();
    // A kept domain runs on those files: a save, a restore or a migration opens them again (found on the
    // real xl: "Disk vdev=xvda failed to stat"); they go with the domain, not with this run.
    if (req.keep && staged.dir !== undefined) {
      staged.keep?.();
      progress.info(`the run's files on the host stay with the kept domain: ${staged.dir} (remove it once the domain is destroyed)`);
    } else await staged.remove();
    await ts.close();
    record.finished = new Date().toISOString();
    record.outcome = outcome;
    await writeRunRecord(a, record);
    return { ...base, domain: { id: ours.id, kept: req.keep }, ...(report ? { report } : {}) };
  } catch (raw) {
    const err = signal.aborted && signal.reason instanceof InterruptedError ? signal.reason : raw;
    const failures: string[] = [];
    if (forgetDestroy) {
      forgetDestroy();
      await destroyOurs().catch((e: unknown) => failures.push(e instanceof Error ? e.message : String(e)));
    }
    await closeConsole(created, consoleFile);
    // what the host saw of the round trip, kept with no frame too: a guest whose network answered is told apart from one that never came up
    if (net) await writeHostKnowledge(a.dir, await net.knowledge(false)).catch(() => undefined);
    await net?.stop();
    await staged?.remove().catch((e: unknown) => failures.push(e instanceof Error ? e.message : String(e)));
    await ts.close().catch(() => undefined);
    record.finished = new Date().toISOString();
    record.outcome = err instanceof InterruptedError ? 'interrupted' : err instanceof TimeoutError ? 'timeout' : 'failed';
    await writeRunRecord(a, record).catch(() => undefined);
    for (const f of failures) progress.warn(`could not destroy domain ${name}: ${f}`);
    progress.warn(`kept for inspection: ${a.configPath}, ${a.consoleLog}, ${a.transcriptLog}`);
    if (err instanceof FbxenError) throw withLogsHint(err, a.dir);
    throw raw;
  }

}

async function closeConsole(created: Created | undefined, file: ConsoleLogFile | undefined): Promise<void> {
  await created?.console.detach();
  if (file && !file.closed) await new Promise<void>((resolve) => file.end(() => resolve()));
}

/** The error as thrown, with where the run's config and logs are added to its hint (also seen with --quiet). */
function withLogsHint(err: FbxenError, dir: string): FbxenError {
  const where = `config, console log and transcript: ${dir}/`;
  if (!err.hint?.includes(where)) Object.defineProperty(err, 'hint', { value: err.hint ? `${err.hint}\n${where}` : where });
  return err;
}

/**
 * The XAPI driver of a run, its settings (credentials, http rule, CA file, console port) checked now:
 * before anything is written or contacted, for --dry-run too. One driver serves the plan and the run; its
 * XAPI calls go to the run's transcript once the flow gives the transcript's `log`.
 */
async function xapiToolstack(req: BootRequest, deps: BootDeps): Promise<{ make: ToolstackFactory; header: string[] }> {
  // Loaded on demand (a literal path, so tsc checks it): xl users never load XAPI code.
  const { XapiDriver } = await import('../toolstack/xapi/driver.js');
  const x = req.xapi ?? { insecure: false };
  let transcript: ((line: string) => void) | undefined;
  const driver = await XapiDriver.open({
    env: deps.env,
    signal: deps.signal,
    cwd: deps.cwd,
    caFile: x.caFile,
    insecure: x.insecure,
    insecureHttp: x.insecureHttp,
    run: req.runId,
    fbxenCd: !req.emptyCdrom && req.iso === undefined,
    timeoutMs: req.timeoutSec * 1000,
    ...deps.xapi,
    // The flow's steps (preflight, create) hold the driver's; nested renderers would garble the terminal.
    step: (title, fn) => (deps.progress.info(title), fn()),
    warn: (m) => deps.progress.warn(m),
    log: (line) => transcript?.(driver.redact(line)),
  });
  const make: ToolstackFactory = (_runner, _run, log) => {
    if (log) transcript = log;
    return driver;
  };
  return { make, header: [driver.settings!.describe] };
}

/**
 * `fbxen boot` for a request: the flow above, with XlDriver (on this dom0 or over ssh) or XapiDriver. XAPI's
 * --dry-run plan is its call list, unnumbered (call-plan.ts); xl's is numbered steps (prepare.ts).
 */
export async function boot(request: BootRequest, deps: BootDeps): Promise<BootResult> {
  if (request.toolstack === 'xapi') {
    // The run id before the driver: it tags what the run creates in the pool.
    const req = { ...request, runId: request.runId ?? newRunId(deps.now?.() ?? new Date()) };
    const { make, header } = await xapiToolstack(req, deps);
    return bootOn(make, req, deps, { calls: true, header });
  }
  return bootOn(xlToolstack(deps, request.host), request, deps);
}
