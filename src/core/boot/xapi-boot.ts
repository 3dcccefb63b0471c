/**
 * `fbxen boot --toolstack xapi`: boots an image on a XenServer / XCP-ng pool and captures the guest's
 * serial console, through XAPI only (no ssh to the pool's hosts).
 *
 * - An .xva is imported whole (PUT /import); a .vhd or raw disk is uploaded into a new VDI
 *   (VDI.create + PUT /import_raw_vdi) and the VM is cloned from the "Other install media" template.
 * - The run nonce travels on the fbxen CD. ISO SRs are usually read-only shares, so fbxen uploads the
 *   ISO into a VDI in the (writable) target SR and puts that VDI in the CD drive. Current xapi accepts
 *   any VDI in a CD VBD; older xapi (xapi_vbd.ml before the check was dropped) refuses a CD whose VDI is
 *   not in an ISO SR with VDI_IS_NOT_ISO, and then fbxen attaches the same VDI as a small second disk
 *   (userdevice 1) and leaves the CD drive empty. docs/xapi.md explains the choice.
 * - The serial console: platform:hvm_serial = "tcp:<this host>:<port>" makes QEMU on the pool host
 *   connect to a listener fbxen opens here (the CI host usually cannot read files on the pool's hosts).
 *   After a migration the new QEMU connects again, and the listener takes the new connection.
 * - Cleanup removes only what this run created (VM, its VDIs, the CD VDI, tasks), on failure and on
 *   SIGINT; --keep leaves the VM running. The session is always logged out.
 */
import { createWriteStream } from 'node:fs';
import { access, constants, stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { ConfigError, EnvironmentError, InputError, InterruptedError, ToolstackError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import type { Progress } from '../progress.js';
import type { CleanupStack } from '../util/cleanup.js';
import { writeFileAtomic } from '../util/atomic.js';
import { NAME_PATTERN } from '../util/names.js';
import type { BootRequestBase, BootResult, RunOutcome } from './types.js';
import { createRunArtifacts, verifyIntoArtifacts, newRunId, runArtifactPaths, DEFAULT_ARTIFACTS_ROOT, type RunArtifacts } from './artifacts.js';
import { waitForFrame } from './wait-for-frame.js';
import { defaultDomainName, inspectImage, requireImageFor } from './image.js';
import { XapiClient, type XapiCallRecord, type XapiClientOptions } from '../toolstack/xapi/client.js';
import { isPlainHttp, loadXapiCredentials, plainHttpWarning, redact } from '../toolstack/xapi/credentials.js';
import { XapiError, xapiHint } from '../toolstack/xapi/errors.js';
import { openConsoleListener, type ConsoleListener } from '../toolstack/xapi/console.js';
import { expectShape, HostRecord, HVM_PLATFORM, NetworkRecord, RecordMap, RefList, SrRecord, VbdRecord } from '../toolstack/xapi/records.js';
import type { XapiValue } from '../toolstack/xapi/xmlrpc.js';

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

/** Seams for tests (the simulator) and for migrate-test; none is needed in production. */
export interface XapiBootInternals {
  cwd?: string;
  now?: () => Date;
  makeCd?: (opts: { runId: string; outPath: string; timestamp: number }) => Promise<void>;
  clientOptions?: Partial<XapiClientOptions>;
  /** The address the pool's QEMU connects to for the console (default: FBXEN_XAPI_CONSOLE_HOST, else the local address of the XAPI connection). */
  consoleHost?: string;
  pollMs?: number;
}

export type XapiImageKind = 'xva' | 'vhd' | 'raw';

export interface XapiPoolFacts {
  pool: string;
  master: { name: string; address: string };
  host: { uuid: string; name: string; address: string } | null;
  sr: { uuid: string; name: string; type: string; shared: boolean };
  network: { uuid: string; name: string; bridge: string };
  vm: { uuid: string; ref: string };
  nonceChannel: 'cd' | 'second-disk' | 'iso-sr' | 'none';
}

const NULL_REF = 'OpaqueRef:NULL';
/** The VM name also names the run directory: the same rule as run ids and xl domain names. */
const VM_NAME_PATTERN = NAME_PATTERN;
const TEMPLATE = 'Other install media';
const CD_USERDEVICE = '3';

/** The API the flow uses: the real client, or the recorder that --dry-run prints. */
interface Api {
  call(method: string, ...params: XapiValue[]): Promise<XapiValue>;
  callAsync(method: string, params: XapiValue[], timeoutMs: number): Promise<XapiValue>;
  putFile(path: string, query: Record<string, string>, file: string, label: string, timeoutMs: number): Promise<XapiValue>;
}

/** Records the calls and answers with symbolic refs: the call plan of --dry-run. */
class PlanRecorder implements Api {
  readonly lines: string[] = [];
  private n = 0;
  async call(method: string, ...params: XapiValue[]): Promise<XapiValue> {
    // Name the answer by what it is: pool.get_master answers a host, pool.get_default_SR an SR.
    const kind = /get_master$/.test(method) ? 'host' : /get_default_SR$/.test(method) ? 'SR' : method.split('.')[0];
    const ref = `<${kind}#${++this.n}>`;
    this.lines.push(`${method}(${['<session>', ...params.map(show)].join(', ')})`);
    return ref;
  }
  async callAsync(method: string, params: XapiValue[], timeoutMs: number): Promise<XapiValue> {
    this.lines.push(`Async.${method}(${['<session>', ...params.map(show)].join(', ')}) → wait for the task (event.from), up to ${Math.round(timeoutMs / 1000)} s`);
    return '';
  }
  async putFile(path: string, query: Record<string, string>, file: string, label: string): Promise<XapiValue> {
    const q = Object.entries({ session_id: '<session>', ...query, task_id: '<task>' })
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    this.lines.push(`task.create(<session>, "fbxen: ${label}", "")`);
    this.lines.push(`PUT ${path}?${q} ← ${basename(file)}; then wait for the task`);
    return path === '/import' ? ['<VM#imported>'] : '';
  }
  note(line: string): void {
    this.lines.push(`# ${line}`);
  }
}

function show(v: XapiValue): string {
  if (typeof v === 'string') return /^<.*>$/.test(v) ? v : JSON.stringify(v);
  if (v && typeof v === 'object' && !Array.isArray(v) && !('value' in v && Object.keys(v).length === 1)) {
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${show(x as XapiValue)}`)
      .join(', ')}}`;
  }
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  return JSON.stringify(v);
}

type Rec = Record<string, XapiValue>;

function str(v: XapiValue | undefined): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

async function findOne(api: Api, cls: 'SR' | 'network', wanted: string | undefined, fallback: () => Promise<string>): Promise<[string, Rec]> {
  const all = expectShape(RecordMap(cls === 'SR' ? SrRecord : NetworkRecord), await api.call(`${cls}.get_all_records`), `${cls}.get_all_records`) as Record<string, Rec>;
  if (wanted) {
    const hits = Object.entries(all).filter(([ref, r]) => r['uuid'] === wanted || r['name_label'] === wanted || ref === wanted || (cls === 'network' && r['bridge'] === wanted));
    if (hits.length === 1) return hits[0]!;
    const names = Object.values(all)
      .map((r) => JSON.stringify(r['name_label']))
      .join(', ');
    throw new InputError(hits.length ? `--${cls === 'SR' ? 'sr' : 'network'} ${wanted} matches ${hits.length} objects` : `no ${cls} named ${JSON.stringify(wanted)} in the pool`, {
      hint: hits.length ? 'pass its uuid instead of the name' : `choose one of: ${names}`,
    });
  }
  const ref = await fallback();
  const rec = all[ref];
  if (!rec) throw new ToolstackError(`the pool's default ${cls} ${ref} is not in ${cls}.get_all_records`, { hint: `pass --${cls === 'SR' ? 'sr' : 'network'} explicitly` });
  return [ref, rec];
}

export async function bootWithXapi(request: XapiBootRequest, deps: XapiBootDeps): Promise<BootResult> {
  return runXapiBoot(request, deps, {});
}

export async function runXapiBoot(request: XapiBootRequest, deps: XapiBootDeps, internals: XapiBootInternals): Promise<BootResult> {
  const cwd = internals.cwd ?? process.cwd();
  // Everything before the first contact runs for --dry-run too: a plan never promises what the run refuses.
  const info = await inspectImage(request.image, cwd);
  requireImageFor('xapi', info);
  const image = { kind: info.format as XapiImageKind, size: info.size, virtualSize: info.virtualSize ?? info.size };
  const imagePath = info.path;
  // `fbxen boot` may leave --name out: default to fbxen-<image base name>, as the xl driver does.
  const req = { ...request, name: request.name || defaultDomainName(info) };
  const badName = VM_NAME_PATTERN.test(req.name) ? undefined : req.name;
  if (badName !== undefined) {
    throw new InputError(`VM name ${JSON.stringify(badName)} is not allowed`, { hint: 'use 1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit (it also names the run directory)' });
  }
  if (image.kind !== 'xva' && image.virtualSize % (2 * 1024 * 1024) !== 0) {
    deps.progress.warn(`the disk is ${image.virtualSize} bytes; XenServer rounds VDIs up to 2 MiB, so the backup GPT will not sit on the last sector (build with a size that is a multiple of 2 MiB)`);
  }
  const run = req.runId ?? newRunId(internals.now?.() ?? new Date());
  const paths = runArtifactPaths({ root: req.artifactsRoot || DEFAULT_ARTIFACTS_ROOT, name: req.name, run, cwd, configFile: 'vm-record.json' });
  const cdKind: 'fbxen' | 'iso-file' | 'iso-sr' | 'empty' = req.emptyCdrom ? 'empty' : req.iso ? ((await stat(resolve(cwd, req.iso)).then((s) => s.isFile(), () => false)) ? 'iso-file' : 'iso-sr') : 'fbxen';

  // The credentials and the CA file are checked for the plan as for the run: plain http is refused
  // unless --insecure-http, and then warned about once.
  const creds = await loadXapiCredentials(deps.env, { insecureHttp: req.insecureHttp });
  const consolePort = deps.env['FBXEN_XAPI_CONSOLE_PORT'];
  if (consolePort !== undefined && consolePort !== '' && !(/^\d{1,5}$/.test(consolePort) && Number(consolePort) >= 1 && Number(consolePort) <= 65535)) {
    throw new ConfigError(`FBXEN_XAPI_CONSOLE_PORT ${JSON.stringify(consolePort.slice(0, 40))} is not a TCP port`, [], { hint: 'set it to a port number from 1 to 65535 that the pool hosts can reach, or unset it for a free one' });
  }
  const secrets = [creds.password];
  const plainHttp = isPlainHttp(creds.url);
  if (plainHttp) deps.progress.warn(plainHttpWarning(creds.url));
  if (req.caFile && !plainHttp) {
    await access(resolve(cwd, req.caFile), constants.R_OK).catch(() => {
      throw new EnvironmentError(`the CA file ${req.caFile} cannot be read`, { hint: 'pass a PEM file with the pool certificate or its CA with --ca-file' });
    });
  }

  if (req.dryRun) {
    const plan = new PlanRecorder();
    plan.lines.push(`session.login_with_password(${JSON.stringify(creds.user)}, <password>, "1.1", "fbxen")  # follows HOST_IS_SLAVE to the master`);
    await flow(plan, req, deps, { image, imagePath, run, paths, cdKind, dry: true, consoleTarget: 'tcp:<this host>:<port>' });
    plan.lines.push('session.logout(<session>)');
    const transport = plainHttp ? 'plain http, NOT encrypted (--insecure-http)' : `TLS ${req.insecure ? 'NOT verified (--insecure)' : req.caFile ? `verified against ${req.caFile}` : 'verified against the system CAs'}`;
    const header = [
      `# fbxen boot --toolstack xapi --dry-run: the calls fbxen would make; nothing was contacted`,
      `# XAPI ${creds.url} as ${creds.user} (password from ${creds.source === 'file' && !deps.env['FBXEN_XAPI_PASSWORD'] ? 'the credentials file' : 'FBXEN_XAPI_PASSWORD'}, never printed); ${transport}`,
      `# image ${req.image}: ${image.kind}, ${image.size} bytes; run ${run}; artifacts ${paths.dir}`,
    ];
    const planText = redact(`${[...header, ...plan.lines].join('\n')}\n`, secrets);
    return { run, name: req.name, toolstack: 'xapi', artifactsDir: paths.dir, consoleLog: paths.consoleLog, domain: { id: '', kept: false }, planText };
  }

  const artifacts = await createRunArtifacts({ root: req.artifactsRoot || DEFAULT_ARTIFACTS_ROOT, name: req.name, run, cwd, configFile: 'vm-record.json' });
  const transcript = createWriteStream(artifacts.transcriptLog, { flags: 'a' });
  const log = (line: string) => transcript.write(redact(`${new Date().toISOString()} ${line}\n`, secrets));
  const record = {
    run,
    name: req.name,
    toolstack: 'xapi' as const,
    domid: null as string | null,
    image: imagePath,
    started: new Date().toISOString(),
    finished: null as string | null,
    outcome: 'running' as RunOutcome,
    xapi: { url: creds.url, user: creds.user } as Record<string, unknown>,
    frameRun: frameRunFor(cdKind, run),
  };
  const writeRecord = () => writeFileAtomic(artifacts.runJson, redact(`${JSON.stringify(record, null, 2)}\n`, secrets));
  await writeRecord();

  // What this run created; removed on failure, on SIGINT (through the command's cleanup stack) and at the end unless --keep.
  const created = new CreatedObjects();
  let client: XapiClient | undefined;
  const removeAndLogout = async (): Promise<string[]> => {
    const failures = client ? await created.remove(client) : [];
    await client?.logout();
    return failures;
  };
  const forgetOurs = deps.cleanup.push('remove the XAPI objects this run created and log out', async () => {
    const failures = await removeAndLogout();
    if (failures.length) throw new ToolstackError(`cleanup left something behind: ${failures.join('; ')}`, { hint: 'remove the leftovers named above in XenCenter or with xe' });
  });

  let listener: ConsoleListener | undefined;
  try {
    client = await deps.progress.step(`Log in to XAPI at ${creds.url}`, () =>
      XapiClient.connect({
        url: creds.url,
        user: creds.user,
        password: creds.password,
        caFile: req.caFile,
        insecure: req.insecure,
        signal: deps.signal,
        transport: deps.env['FBXEN_XAPI_TRANSPORT'] === 'xmlrpc' ? 'xmlrpc' : 'jsonrpc',
        onCall: (r: XapiCallRecord) => log(`${r.method}(${r.params.map((p) => JSON.stringify(p)).join(', ')}) ${r.durationMs} ms ${r.outcome}`),
        ...internals.clientOptions,
      }),
    );
    const c = client;
    if (c.masterUrl !== creds.url) log(`# redirected to the pool master ${c.masterUrl} (HOST_IS_SLAVE)`);

    // The console listener comes first: its address goes into the VM's platform map.
    const consoleHost = internals.consoleHost ?? deps.env['FBXEN_XAPI_CONSOLE_HOST'] ?? c.localAddress;
    if (!consoleHost) throw new EnvironmentError('cannot tell which address the pool can reach this host on', { hint: "set FBXEN_XAPI_CONSOLE_HOST to this host's address as seen from the pool" });
    listener = await openConsoleListener({
      logPath: artifacts.consoleLog,
      advertiseHost: consoleHost,
      listenHost: deps.env['FBXEN_XAPI_CONSOLE_LISTEN'],
      port: consolePort ? Number(consolePort) : undefined,
      onConnection: (remote) => log(`# console connection from ${remote}`),
      pool: c, // only the pool's hosts may write into the console log
      env: deps.env,
    });
    const consoleTarget = listener.target;

    // The flow stops at the next call once the run is interrupted; cleanup uses the client directly.
    const guarded: Api = {
      call: (method, ...params) => (deps.signal.throwIfAborted(), c.call(method, ...params)),
      callAsync: (method, params, ms) => (deps.signal.throwIfAborted(), c.callAsync(method, params, ms)),
      putFile: (path, query, file, label, ms) => (deps.signal.throwIfAborted(), c.putFile(path, query, file, label, ms)),
    };
    const facts = await flow(guarded, req, deps, { image, imagePath, run, paths: artifacts, cdKind, dry: false, consoleTarget, created, log, makeCd: internals.makeCd });
    record.domid = facts.vm.uuid;
    record.xapi = { ...record.xapi, ...facts };
    await writeRecord();

    const frame = await deps.progress.step(`Wait for the collector (up to ${req.timeoutSec} s)`, (handle) =>
      waitForFrame(artifacts.consoleLog, record.frameRun ?? undefined, req.timeoutSec * 1000, deps.signal, {
        phase: 'boot',
        pollMs: internals.pollMs ?? 500,
        onStatus: (line) => handle.output(line),
        guestGone: throttle(5000, async () => {
          if (listener?.stopped()) return listener.stopped(); // its log limit: no frame can arrive any more
          const state = str(await c.call('VM.get_power_state', facts.vm.ref).catch(() => 'Running'));
          return state === 'Halted' ? 'halted' : undefined;
        }),
      }),
    );

    let report: BootResult['report'];
    let outcome: RunOutcome = 'collected';
    if (req.verify) {
      report = await deps.progress.step('Verify', () => verifyIntoArtifacts(frame.bundle, artifacts, frame.run));
      outcome = 'verified';
    }

    if (req.keep) {
      // Keep the VM and its disks; only the session goes.
      await c.logout();
      outcome = req.verify ? outcome : 'kept';
      deps.progress.info(`VM ${req.name} (${facts.vm.uuid}) left running on ${facts.host?.name ?? 'the pool'}; its console stays pointed at ${consoleTarget}`);
    } else {
      await deps.progress.step(`Remove ${req.name}`, async () => {
        const failures = await removeAndLogout();
        if (failures.length) throw new ToolstackError(`cleanup left something behind: ${failures.join('; ')}`, { hint: 'remove the leftovers named above in XenCenter or with xe' });
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
      domain: { id: facts.vm.uuid, kept: req.keep },
      ...(report ? { report } : {}),
    };
  } catch (raw) {
    const err = deps.signal.aborted && deps.signal.reason instanceof InterruptedError ? deps.signal.reason : raw;
    forgetOurs();
    const failures = await removeAndLogout();
    for (const f of failures) log(`# cleanup failed: ${f}`);
    record.finished = new Date().toISOString();
    record.outcome = err instanceof InterruptedError ? 'interrupted' : (err as { exitCode?: number }).exitCode === 6 ? 'timeout' : 'failed';
    await writeRecord().catch(() => undefined);
    if (err instanceof Error) err.message = redact(err.message, secrets);
    throw err;
  } finally {
    await listener?.close();
    await new Promise<void>((r) => transcript.end(r));
  }
}

/**
 * The VM and VDIs this run created. Removal order matters: the VM first (VM.destroy leaves its VDIs,
 * and a VDI with a VBD cannot go), then the VDIs, each attempted even when another fails.
 */
export class CreatedObjects {
  vm: string | undefined;
  /** VDIs fbxen created itself (disk upload, CD). */
  readonly vdis: string[] = [];
  /** True when the VM came from an XVA: its disks were created by the import and go with it. */
  imported = false;

  private queue: Promise<unknown> = Promise.resolve();

  /**
   * Removes what is recorded now. Calls are serialised: a SIGINT cleanup and the failure path may both
   * ask, and the second removes whatever the flow created after the first started.
   */
  remove(api: Pick<Api, 'call'>): Promise<string[]> {
    const next = this.queue.then(() => this.removeNow(api));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async removeNow(api: Pick<Api, 'call'>): Promise<string[]> {
    const failures: string[] = [];
    const attempt = async (label: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${label}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const vm = this.vm;
    this.vm = undefined;
    if (vm) {
      const importedDisks: string[] = [];
      await attempt(`remove VM ${vm}`, async () => {
        const state = str(await api.call('VM.get_power_state', vm));
        if (state !== 'Halted') {
          try {
            await api.call('VM.hard_shutdown', vm);
          } catch (err) {
            if (!(err instanceof XapiError && err.code === 'VM_BAD_POWER_STATE')) throw err; // raced with the guest powering off
          }
        }
        if (this.imported) {
          for (const vbd of expectShape(RefList, await api.call('VM.get_VBDs', vm), 'VM.get_VBDs')) {
            const r = expectShape(VbdRecord, await api.call('VBD.get_record', vbd), 'VBD.get_record');
            const vdi = str(r['VDI']);
            if (r['type'] === 'Disk' && vdi !== NULL_REF && !this.vdis.includes(vdi)) importedDisks.push(vdi);
          }
        }
        await api.call('VM.destroy', vm);
      });
      for (const vdi of importedDisks) await attempt(`destroy VDI ${vdi}`, () => api.call('VDI.destroy', vdi));
    }
    while (this.vdis.length) {
      const vdi = this.vdis.pop()!;
      await attempt(`destroy VDI ${vdi}`, () => api.call('VDI.destroy', vdi));
    }
    return failures;
  }
}

interface FlowContext {
  image: { kind: XapiImageKind; size: number; virtualSize: number };
  imagePath: string;
  run: string;
  paths: RunArtifacts;
  cdKind: 'fbxen' | 'iso-file' | 'iso-sr' | 'empty';
  dry: boolean;
  consoleTarget: string;
  created?: CreatedObjects;
  log?: (line: string) => void;
  makeCd?: XapiBootInternals['makeCd'];
}

/** The VM's life up to "started": shared by the real run and the --dry-run plan. */
async function flow(api: Api, req: XapiBootRequest & { name: string }, deps: XapiBootDeps, f: FlowContext): Promise<XapiPoolFacts> {
  const plan = api instanceof PlanRecorder ? api : undefined;
  const created = f.created ?? new CreatedObjects();
  const timeoutMs = req.timeoutSec * 1000;
  const step = <T>(title: string, fn: () => Promise<T>): Promise<T> => (plan ? (plan.note(title), fn()) : deps.progress.step(title, fn));

  // Pool, SR, network.
  const { poolName, master, sr, srRec, network, netRec } = await step('Find the pool, the SR and the network', async () => {
    const pools = (await api.call('pool.get_all')) as XapiValue;
    const poolRef = Array.isArray(pools) ? str(pools[0]) : str(pools);
    const poolName = str(await api.call('pool.get_name_label', poolRef));
    const masterRef = str(await api.call('pool.get_master', poolRef));
    const masterAnswer = await api.call('host.get_record', masterRef);
    const masterRec = (plan ? {} : expectShape(HostRecord, masterAnswer, 'host.get_record')) as Rec;
    let sr: string;
    let srRec: Rec;
    if (plan) {
      if (!req.sr) await api.call('pool.get_default_SR', poolRef);
      await api.call('SR.get_all_records');
      [sr, srRec] = [req.sr ? `<SR ${req.sr}>` : '<default SR>', { uuid: '<uuid>', name_label: req.sr ?? '<default>', shared: false, type: '?' }];
    } else {
      [sr, srRec] = await findOne(api, 'SR', req.sr, async () => {
        const d = str(await api.call('pool.get_default_SR', poolRef));
        if (!d || d === NULL_REF) throw new XapiError('DEFAULT_SR_NOT_FOUND', [], 'pool.get_default_SR');
        return d;
      });
      if (srRec['content_type'] === 'iso') throw new InputError(`SR ${str(srRec['name_label'])} is an ISO library, not disk storage`, { hint: 'pass --sr with a disk SR (xe sr-list content-type=user)' });
    }
    let network: string;
    let netRec: Rec;
    if (plan) {
      await api.call('network.get_all_records');
      [network, netRec] = [req.network ? `<network ${req.network}>` : '<network xenbr0>', { uuid: '<uuid>', name_label: req.network ?? '', bridge: 'xenbr0' }];
    } else {
      [network, netRec] = await findOne(api, 'network', req.network, async () => {
        const all = expectShape(RecordMap(NetworkRecord), await api.call('network.get_all_records'), 'network.get_all_records') as Record<string, Rec>;
        const hit = Object.entries(all).find(([, r]) => r['bridge'] === 'xenbr0') ?? Object.entries(all).find(([, r]) => !String(r['bridge']).startsWith('xapi'));
        if (!hit) throw new InputError('the pool has no network on xenbr0', { hint: 'pass --network NAME' });
        return hit[0];
      });
    }
    return { poolName, master: { name: str(masterRec['name_label']), address: str(masterRec['address']) }, sr, srRec, network, netRec };
  });

  const createVdi = async (label: string, size: number, purpose: string): Promise<string> => {
    const vdi = str(
      await api.call('VDI.create', {
        name_label: label,
        name_description: `fbxen ${purpose} (run ${f.run})`,
        SR: sr,
        virtual_size: size,
        type: 'user',
        sharable: false,
        read_only: false,
        other_config: { fbxen_run: f.run },
        xenstore_data: {},
        sm_config: {},
        tags: ['fbxen'],
      }),
    );
    created.vdis.push(vdi);
    return vdi;
  };

  let vm: string;
  let cdVbd: string | undefined;
  if (f.image.kind === 'xva') {
    vm = await step(`Import ${basename(f.imagePath)} (XVA, ${f.image.size} bytes)`, async () => {
      const result = await api.putFile('/import', { sr_id: sr }, f.imagePath, `import ${req.name}`, timeoutMs);
      const refs = Array.isArray(result) ? result.map(str) : [str(result)];
      const ref = refs[0];
      if (!ref) throw new ToolstackError('the XVA import finished without a VM', { hint: 'check the task in XenCenter; the XVA may be damaged (rebuild it)' });
      created.vm = ref;
      created.imported = true;
      return ref;
    });
    await api.call('VM.set_name_label', vm, req.name);
    await api.call('VM.add_to_other_config', vm, 'fbxen_run', f.run);
    await sizeVm(api, vm, req, plan !== undefined);
    if (req.network) {
      const vifsAnswer = await api.call('VM.get_VIFs', vm);
      const vifs = plan ? ['<VIF#imported>'] : expectShape(RefList, vifsAnswer, 'VM.get_VIFs');
      for (const vif of vifs) await api.call('VIF.destroy', vif);
      await createVif(api, vm, network);
    }
    const vbdsAnswer = await api.call('VM.get_VBDs', vm);
    if (plan) {
      plan.note('take the CD drive (userdevice 3) the XVA brought: VBD.get_record for each VBD, type "CD"');
      cdVbd = '<VBD#imported-cd>';
    } else {
      for (const vbd of expectShape(RefList, vbdsAnswer, 'VM.get_VBDs')) {
        const rec = expectShape(VbdRecord, await api.call('VBD.get_record', vbd), 'VBD.get_record');
        if (rec['type'] === 'CD') cdVbd = vbd;
      }
    }
  } else {
    const diskVdi = await step(`Upload the disk (${f.image.kind}, ${f.image.size} bytes)`, async () => {
      const vdi = await createVdi(`${req.name} disk0`, f.image.virtualSize, 'boot disk');
      await api.putFile('/import_raw_vdi', { vdi, format: f.image.kind }, f.imagePath, `upload ${req.name} disk0`, timeoutMs);
      return vdi;
    });
    vm = await step(`Create ${req.name} from "${TEMPLATE}"`, async () => {
      const templates = (await api.call('VM.get_by_name_label', TEMPLATE)) as XapiValue;
      let template = plan ? '<template>' : '';
      if (!plan) {
        for (const t of Array.isArray(templates) ? templates.map(str) : []) {
          if ((await api.call('VM.get_is_a_template', t)) === true) template = t;
        }
        if (!template) throw new ToolstackError(`the pool has no "${TEMPLATE}" template`, { hint: 'this template ships with every XenServer/XCP-ng; restore the default templates (xe-install-templates) or check the user can see them' });
      }
      const ref = str(await api.call('VM.clone', template, req.name));
      created.vm = ref;
      // No disks from the template's provision XML: ours is the uploaded one.
      await ignoreMissingKey(api.call('VM.remove_from_other_config', ref, 'disks'));
      await api.call('VM.provision', ref);
      await api.call('VM.add_to_other_config', ref, 'fbxen_run', f.run);
      await api.call('VM.set_name_description', ref, `fbxen run ${f.run}`);
      await api.call('VM.set_HVM_boot_policy', ref, 'BIOS order');
      await api.call('VM.set_HVM_boot_params', ref, { order: 'dc', firmware: 'bios' });
      await api.call('VM.set_platform', ref, { ...HVM_PLATFORM });
      await sizeVm(api, ref, req, plan !== undefined);
      await api.call('VBD.create', vbdRecord(ref, diskVdi, '0', 'Disk'));
      await createVif(api, ref, network);
      cdVbd = str(await api.call('VBD.create', vbdRecord(ref, NULL_REF, CD_USERDEVICE, 'CD')));
      return ref;
    });
  }
  if (!cdVbd) throw new ToolstackError(`VM ${req.name} has no CD drive`, { hint: 'rebuild the XVA with this fbxen (it adds an empty CD at userdevice 3)' });

  // The nonce: on the fbxen CD (or the user's ISO), in the CD drive if xapi allows, else as a second disk.
  let nonceChannel: XapiPoolFacts['nonceChannel'] = 'none';
  if (f.cdKind === 'iso-sr') {
    await step(`Insert ${req.iso} from an ISO library`, async () => {
      const named = plan ? ['<VDI iso>'] : expectShape(RefList, await api.call('VDI.get_by_name_label', req.iso!), 'VDI.get_by_name_label');
      // Only ISOs from ISO libraries: a disk VDI with the same name must never land in the CD drive.
      const hits: string[] = [];
      for (const vdi of named) {
        if (plan || str((await api.call('SR.get_content_type', await api.call('VDI.get_SR', vdi))) as XapiValue) === 'iso') hits.push(vdi);
      }
      if (!hits.length) throw new InputError(`no ISO named ${JSON.stringify(req.iso)} in the pool's ISO libraries, and no such local file`, { hint: 'pass a local ISO file, or the exact name of an ISO in an ISO SR (xe cd-list)' });
      await api.call('VBD.insert', cdVbd!, hits[0]!);
      nonceChannel = 'iso-sr';
    });
  } else if (f.cdKind === 'fbxen' || f.cdKind === 'iso-file') {
    const isoPath = f.cdKind === 'iso-file' ? resolve(req.iso!) : f.paths.cdPath;
    nonceChannel = await step(f.cdKind === 'fbxen' ? 'Make the fbxen CD and put it in the CD drive' : `Put ${basename(isoPath)} in the CD drive`, async () => {
      if (f.cdKind === 'fbxen' && !plan) {
        const ts = Math.floor(Date.now() / 1000);
        if (f.makeCd) await f.makeCd({ runId: f.run, outPath: isoPath, timestamp: ts });
        else {
          const { makeFbxenCd, defaultCollectorPath } = await import('../iso/fbxen-cd.js');
          await makeFbxenCd({ runId: f.run, phase: 'boot', collectorPath: deps.env['FBXEN_COLLECTOR'] ?? defaultCollectorPath(), outPath: isoPath, timestamp: ts }, deps.runner);
        }
      }
      if (plan && f.cdKind === 'fbxen') plan.note(`xorriso writes the fbxen CD (run ${f.run}) to ${isoPath}`);
      const isoSize = plan ? 0 : (await stat(isoPath)).size;
      const cdVdiSize = Math.max(2 * 1024 * 1024, Math.ceil(isoSize / (2 * 1024 * 1024)) * 2 * 1024 * 1024);
      const vdi = await createVdi(`${req.name} fbxen-cd`, cdVdiSize, 'CD');
      await api.putFile('/import_raw_vdi', { vdi, format: 'raw' }, isoPath, `upload ${req.name} CD`, timeoutMs);
      try {
        await api.call('VBD.insert', cdVbd!, vdi);
        return 'cd' as const;
      } catch (err) {
        if (!(err instanceof XapiError) || err.code !== 'VDI_IS_NOT_ISO') throw err;
        deps.progress.warn('this xapi only takes ISO-library VDIs in the CD drive; the fbxen CD goes in as a second disk (userdevice 1) and the CD drive stays empty');
        f.log?.('# VDI_IS_NOT_ISO: attaching the CD image as disk 1 instead');
        await api.call('VBD.create', { ...vbdRecord(vm, vdi, '1', 'Disk'), bootable: false });
        return 'second-disk' as const;
      }
    });
    if (plan) plan.note('if VBD.insert fails with VDI_IS_NOT_ISO (older xapi): VBD.create {type: "Disk", userdevice: "1", VDI: <the CD VDI>} instead');
  }

  // The console: QEMU connects out to us.
  await ignoreMissingKey(api.call('VM.remove_from_platform', vm, 'hvm_serial'));
  await api.call('VM.add_to_platform', vm, 'hvm_serial', f.consoleTarget);
  if (plan) plan.note(`listen on ${f.consoleTarget.replace(/^tcp:/, '')} for the guest console; QEMU on the pool host connects to it`);

  await step(`Start ${req.name}`, async () => {
    try {
      await api.callAsync('VM.start', [vm, false, false], Math.min(timeoutMs, 300_000));
    } catch (err) {
      if (!(err instanceof XapiError) || err.code !== 'VM_REQUIRES_SR' || !err.params[1]) throw err;
      // The parameter is a ref: name the SR, so the user knows which --sr not to use.
      const label = str(await api.call('SR.get_name_label', err.params[1]).catch(() => ''));
      if (!label) throw err;
      throw new XapiError(err.code, err.params, err.method, { hint: xapiHint(err.code, [err.params[0] ?? '', `"${label}" (${err.params[1]})`], err.method), cause: err });
    }
  });

  // Pool facts for the run record (migrate-test needs the host and whether the SR is shared).
  let host: XapiPoolFacts['host'] = null;
  const vmUuid = plan ? '<uuid>' : str(await api.call('VM.get_uuid', vm));
  if (!plan) {
    const hostRef = str(await api.call('VM.get_resident_on', vm));
    if (hostRef && hostRef !== NULL_REF) {
      const h = expectShape(HostRecord, await api.call('host.get_record', hostRef), 'host.get_record');
      host = { uuid: str(h['uuid']), name: str(h['name_label']), address: str(h['address']) };
    }
  } else {
    await api.call('VM.get_resident_on', vm);
  }
  if (plan) {
    const frameRun = frameRunFor(f.cdKind, f.run);
    plan.note(`wait for ${frameRun ? `"FBXEN1 END ${frameRun} boot"` : 'the newest complete FBXEN1 boot frame of any run (no fbxen CD: the guest cannot know the run id)'} on the console, up to ${req.timeoutSec} s${req.verify ? '; then verify the bundle' : ''}`);
    plan.note(req.keep ? 'keep the VM running (--keep)' : 'then remove what this run created: VM.hard_shutdown, VM.destroy, VDI.destroy for each VDI fbxen created');
  }
  return {
    pool: poolName,
    master,
    host,
    sr: { uuid: str(srRec['uuid']), name: str(srRec['name_label']), type: str(srRec['type']), shared: srRec['shared'] === true },
    network: { uuid: str(netRec['uuid']), name: str(netRec['name_label']), bridge: str(netRec['bridge']) },
    vm: { uuid: vmUuid, ref: vm },
    nonceChannel,
  };
}

/**
 * The run id the collector's frame must carry: this run's when the fbxen CD brings the nonce, else none
 * (the image's own collector, or the user's ISO, cannot know it), as the xl driver does; run.json keeps it.
 */
function frameRunFor(cdKind: FlowContext['cdKind'], run: string): string | null {
  return cdKind === 'fbxen' ? run : null;
}

/** Memory (all four limits equal), VCPUs, and halt on crash so a crash shows as "halted", not a boot loop. */
async function sizeVm(api: Api, vm: string, req: XapiBootRequest, dry: boolean): Promise<void> {
  await api.call('VM.set_actions_after_crash', vm, 'destroy');
  const bytes = String(req.memoryMiB * 1024 * 1024);
  await api.call('VM.set_memory_limits', vm, bytes, bytes, bytes, bytes);
  // VCPUs_at_startup may not exceed VCPUs_max: raise max first, lower startup first.
  const currentMax = dry ? 1 : Number(await api.call('VM.get_VCPUs_max', vm));
  if (req.vcpus >= currentMax) {
    await api.call('VM.set_VCPUs_max', vm, req.vcpus);
    await api.call('VM.set_VCPUs_at_startup', vm, req.vcpus);
  } else {
    await api.call('VM.set_VCPUs_at_startup', vm, req.vcpus);
    await api.call('VM.set_VCPUs_max', vm, req.vcpus);
  }
}

/** Removing a map key that is not there is not an error worth stopping for (older xapi may report one). */
async function ignoreMissingKey(p: Promise<XapiValue>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof XapiError) || err.code === 'SESSION_INVALID') throw err;
  }
}

function vbdRecord(vm: string, vdi: string, userdevice: string, type: 'Disk' | 'CD'): Rec {
  const empty = vdi === NULL_REF;
  return {
    VM: vm,
    VDI: vdi,
    userdevice,
    bootable: type === 'Disk' && userdevice === '0',
    mode: type === 'CD' ? 'RO' : 'RW',
    type,
    empty,
    unpluggable: type !== 'Disk' || userdevice !== '0',
    other_config: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    device: '',
  };
}

async function createVif(api: Api, vm: string, network: string): Promise<void> {
  await api.call('VIF.create', {
    device: '0',
    network,
    VM: vm,
    MAC: '',
    MTU: 1500,
    other_config: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    locking_mode: 'network_default',
  });
}

function throttle(ms: number, fn: () => Promise<string | undefined>): () => Promise<string | undefined> {
  let last = 0;
  return async () => {
    if (Date.now() - last < ms) return undefined;
    last = Date.now();
    return fn();
  };
}


