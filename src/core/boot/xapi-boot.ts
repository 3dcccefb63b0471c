/**
 * `fbxen boot --toolstack xapi`: boots an image on a XenServer / XCP-ng pool and captures the guest's
 * serial console, through XAPI only (no ssh to the pool's hosts). Everything XAPI-specific is in the
 * driver (src/core/toolstack/xapi/driver.ts); this is the run around it until the toolstack-agnostic boot
 * flow takes it over: the image check, the run directory (run.json, transcript, console.log), the fbxen
 * CD, the wait for the collector's frame, verify, and --keep or removal. Cleanup removes only what this
 * run created (VM, its VDIs, the CD VDI), on failure and on SIGINT; the session is always logged out.
 */
import { createWriteStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { InterruptedError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import type { Progress } from '../progress.js';
import type { CleanupStack } from '../util/cleanup.js';
import { throttle } from '../util/throttle.js';
import { ConsoleLogFile, consoleLogLimit } from '../run/console-log.js';
import type { BootRequestBase, BootResult, RunOutcome } from './types.js';
import { verifyIntoArtifacts } from './artifacts.js';
import { xapiNetKnowledge } from './network-check.js';
import { createRunArtifacts, newRunId, runArtifactPaths, writeRunRecord, DEFAULT_ARTIFACTS_ROOT, type RunRecord } from '../run/artifacts.js';
import { waitForFrame } from './wait-for-frame.js';
import { defaultDomainName, inspectImage, requireImageFor } from './image.js';
import type { GuestSpec, DomainRef } from '../toolstack/types.js';
import { XapiDriver, type XapiPoolFacts } from '../toolstack/xapi/driver.js';
import type { XapiClientOptions } from '../toolstack/xapi/client.js';

export type { XapiPoolFacts };

export interface XapiBootRequest extends BootRequestBase {
  /** Unset: fbxen-<image base name>, as the xl driver does. */
  name?: string | undefined;
  network?: string | undefined;
  sr?: string | undefined;
  caFile?: string | undefined;
  insecure: boolean;
  /** --insecure-http: accept an http:// FBXEN_XAPI_URL (the password then travels in clear). */
  insecureHttp?: boolean | undefined;
}

export interface XapiBootDeps {
  runner: Runner;
  progress: Progress;
  signal: AbortSignal;
  cleanup: CleanupStack;
  env: NodeJS.ProcessEnv;
}

/** Seams for tests (the simulator); none is needed in production. */
export interface XapiBootInternals {
  cwd?: string;
  now?: () => Date;
  makeCd?: (opts: { runId: string; outPath: string; timestamp: number }) => Promise<void>;
  clientOptions?: Partial<XapiClientOptions>;
  /** The address the pool's QEMU connects to for the console (default: FBXEN_XAPI_CONSOLE_HOST, else the local address of the XAPI connection). */
  consoleHost?: string;
  pollMs?: number;
}

export async function bootWithXapi(request: XapiBootRequest, deps: XapiBootDeps): Promise<BootResult> {
  return runXapiBoot(request, deps, {});
}

export async function runXapiBoot(request: XapiBootRequest, deps: XapiBootDeps, internals: XapiBootInternals): Promise<BootResult> {
  const cwd = internals.cwd ?? process.cwd();
  // Everything before the first contact runs for --dry-run too: a plan never promises what the run refuses.
  const info = await inspectImage(request.image, cwd);
  requireImageFor('xapi', info);
  // `fbxen boot` may leave --name out: default to fbxen-<image base name>, as the xl driver does.
  const req = { ...request, name: request.name || defaultDomainName(info) };
  const run = req.runId ?? newRunId(internals.now?.() ?? new Date());
  const root = req.artifactsRoot || DEFAULT_ARTIFACTS_ROOT;
  const paths = runArtifactPaths({ root, name: req.name, run, cwd, configFile: 'vm-record.json' });
  const cdKind: 'fbxen' | 'iso-file' | 'iso-sr' | 'empty' = req.emptyCdrom ? 'empty' : req.iso ? ((await stat(resolve(cwd, req.iso)).then((s) => s.isFile(), () => false)) ? 'iso-file' : 'iso-sr') : 'fbxen';
  // The run id the collector's frame must carry: this run's when the fbxen CD brings the nonce, else
  // none (the image's own collector, or the user's ISO, cannot know it), as with xl; run.json keeps it.
  const frameRun = cdKind === 'fbxen' ? run : null;
  const guest: GuestSpec = {
    name: req.name,
    // --type pvh reaches the driver, whose prepare refuses it with docs/xapi.md's reasons.
    type: req.type ?? 'hvm',
    vcpus: req.vcpus,
    memoryMiB: req.memoryMiB,
    image: { path: info.path, format: info.format as 'xva' | 'vhd' | 'raw', size: info.size, virtualSize: info.virtualSize ?? info.size },
    cdrom: cdKind === 'empty' ? { kind: 'empty' } : { kind: 'iso', path: cdKind === 'fbxen' ? paths.cdPath : req.iso! },
    network: req.network,
    storage: req.sr,
  };

  const artifactsBox: { log?: (line: string) => void } = {};
  const driver = await XapiDriver.open({
    env: deps.env,
    signal: deps.signal,
    cwd,
    caFile: req.caFile,
    insecure: req.insecure,
    insecureHttp: req.insecureHttp,
    run,
    fbxenCd: cdKind === 'fbxen',
    timeoutMs: req.timeoutSec * 1000,
    consoleHost: internals.consoleHost,
    clientOptions: internals.clientOptions,
    step: (title, fn) => deps.progress.step(title, fn),
    warn: (m) => deps.progress.warn(m),
    log: (line) => artifactsBox.log?.(line),
  });
  driver.prepare(guest);

  if (req.dryRun) {
    const lines = [
      `# fbxen boot --toolstack xapi --dry-run: the calls fbxen would make; nothing was contacted`,
      driver.settings!.describe,
      `# image ${req.image}: ${guest.image.format}, ${guest.image.size} bytes; run ${run}; artifacts ${paths.dir}`,
      ...(await driver.plan({ step: 'preflight', guest })),
      ...(await driver.plan({ step: 'create', guest, runDir: paths.dir, consoleLog: paths.consoleLog })),
      `# wait for ${frameRun ? `"FBXEN1 END ${frameRun} boot"` : 'the newest complete FBXEN1 boot frame of any run (no fbxen CD: the guest cannot know the run id)'} on the console, up to ${req.timeoutSec} s${req.verify ? '; then verify the bundle' : ''}`,
      ...(await driver.plan({ step: 'stop', guest, keep: req.keep, graceSec: 0 })),
    ];
    const planText = driver.redact(`${lines.join('\n')}\n`);
    return { run, name: req.name, toolstack: 'xapi', artifactsDir: paths.dir, consoleLog: paths.consoleLog, domain: { id: '', kept: false }, planText };
  }

  const artifacts = await createRunArtifacts({ root, name: req.name, run, cwd, configFile: 'vm-record.json' });
  const transcript = createWriteStream(artifacts.transcriptLog, { flags: 'a' });
  const log = (line: string) => transcript.write(driver.redact(`${new Date().toISOString()} ${line}\n`));
  artifactsBox.log = log;
  const creds = driver.settings!.creds;
  // run.json as every run writes it, plus what XAPI said about the pool and the VM.
  const record: RunRecord & { xapi: Record<string, unknown> } = {
    run,
    name: req.name,
    toolstack: 'xapi',
    domid: null,
    image: info.path,
    started: new Date().toISOString(),
    finished: null,
    outcome: 'running',
    xapi: { url: creds.url, user: creds.user },
    frameRun,
  };
  const writeRecord = () => writeRunRecord(artifacts, record);
  await writeRecord();

  let domain: DomainRef | undefined;
  // On SIGINT the command's cleanup stack removes the VM (or what an unfinished create made) and logs out.
  const forgetOurs = deps.cleanup.push('remove the XAPI objects this run created and log out', async () => {
    try {
      if (domain) await driver.destroy(domain);
    } finally {
      await driver.close();
    }
  });

  const consoleLog = new ConsoleLogFile(artifacts.consoleLog, consoleLogLimit(deps.env));
  try {
    await driver.preflight(guest);
    if (cdKind === 'fbxen') {
      await deps.progress.step('Make the fbxen CD', async () => {
        const ts = Math.floor(Date.now() / 1000);
        if (internals.makeCd) await internals.makeCd({ runId: run, outPath: paths.cdPath, timestamp: ts });
        else {
          const { makeFbxenCd, defaultCollectorPath } = await import('../iso/fbxen-cd.js');
          await makeFbxenCd({ runId: run, phase: 'boot', collectorPath: deps.env['FBXEN_COLLECTOR'] ?? defaultCollectorPath(), outPath: paths.cdPath, timestamp: ts }, deps.runner);
        }
      });
    }
    const created = await driver.create(guest, { runDir: artifacts.dir, console: consoleLog, signal: deps.signal, log, onDomain: (d) => (domain = d) });
    record.domid = created.facts.vm.uuid;
    record.xapi = { ...record.xapi, ...created.facts };
    await writeRecord();

    const d = created.domain;
    const frame = await deps.progress.step(`Wait for the collector (up to ${req.timeoutSec} s)`, (handle) =>
      waitForFrame(artifacts.consoleLog, frameRun ?? undefined, req.timeoutSec * 1000, deps.signal, {
        phase: 'boot',
        pollMs: internals.pollMs ?? 500,
        onStatus: (line) => handle.output(line),
        guestGone: throttle(5000, async () => {
          if (consoleLog.stopped) return consoleLog.stopped; // its log limit: no frame can arrive any more
          const state = await driver.state(d).catch(() => 'running' as const);
          return state === 'halted' ? 'halted' : undefined;
        }),
      }),
    );

    let report: BootResult['report'];
    let outcome: RunOutcome = 'collected';
    if (req.verify) {
      report = await deps.progress.step('Verify', () => verifyIntoArtifacts(frame.bundle, artifacts, frame.run, { net: xapiNetKnowledge(req.network, `fbxen boot run ${run} (XAPI)`) }));
      outcome = 'verified';
    }

    if (req.keep) {
      // Keep the VM and its disks; only the session goes.
      await driver.close();
      outcome = req.verify ? outcome : 'kept';
      deps.progress.info(created.keepHint);
    } else {
      await deps.progress.step(`Remove ${req.name}`, async () => {
        await driver.destroy(d);
        await driver.close();
      });
    }
    forgetOurs();
    record.finished = new Date().toISOString();
    record.outcome = outcome;
    await writeRecord();
    return {
      run,
      name: req.name,
      toolstack: 'xapi',
      artifactsDir: artifacts.dir,
      consoleLog: artifacts.consoleLog,
      domain: { id: d.id, kept: req.keep },
      ...(report ? { report } : {}),
    };
  } catch (raw) {
    const err = deps.signal.aborted && deps.signal.reason instanceof InterruptedError ? deps.signal.reason : raw;
    forgetOurs();
    if (domain) await driver.destroy(domain).catch((e: unknown) => log(`# cleanup failed: ${e instanceof Error ? e.message : String(e)}`));
    await driver.close();
    record.finished = new Date().toISOString();
    record.outcome = err instanceof InterruptedError ? 'interrupted' : (err as { exitCode?: number }).exitCode === 6 ? 'timeout' : 'failed';
    await writeRecord().catch(() => undefined);
    if (err instanceof Error) err.message = driver.redact(err.message);
    throw err;
  } finally {
    await driver.close().catch(() => undefined);
    await new Promise<void>((r) => consoleLog.end(r));
    await new Promise<void>((r) => transcript.end(r));
  }
}
