/**
 * What migrate-test sets up before its loop: the request checked, the toolstack driver (XlDriver, or
 * XapiDriver loaded only for --toolstack xapi), the guest channel, and the --dry-run plan.
 */
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { UsageError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import { DEFAULT_REMOTE_ROOT, parseHostUrl, SshSession } from '../exec/ssh.js';
import type { MigrateMode, Toolstack } from '../toolstack/types.js';
import { XlDriver } from '../toolstack/xl/xl-driver.js';
import type { ConsoleCapture } from './capture.js';
import { consoleChannel, sshChannel, type ConsoleKeyboard } from './channel.js';
import type { MigrateTestDeps, MigrateTestRequest } from './request.js';
import type { GuestChannel } from './types.js';

const HOST_COLLECTOR = fileURLToPath(new URL('../../../guest/fbxen-collect', import.meta.url));
const HOST_HEARTBEAT = fileURLToPath(new URL('../../../guest/fbxen-heartbeat', import.meta.url));

/** Throws a request that cannot work, before anything runs. */
export function checkRequest(req: MigrateTestRequest): void {
  if (req.evidence === 'ssh' && !req.ssh) throw new UsageError('--evidence ssh needs --ssh user@host', { hint: 'give --ssh root@GUEST, or --evidence console' });
  if (req.toolstack === 'xl' && req.mode === 'live' && (req.to ?? 'localhost') !== 'localhost' && req.evidence === 'console') {
    throw new UsageError(`--to ${req.to}: the console of a domain on another host cannot be read from here`, { hint: 'add --evidence ssh --ssh root@GUEST' });
  }
  if (req.toolstack === 'xapi' && req.mode === 'save-restore' && req.to) throw new UsageError('--to has no meaning with --mode save-restore', { hint: 'drop --to' });
  if (req.toolstack === 'xapi' && req.host) throw new UsageError('--host is the dom0 of --toolstack xl', { hint: 'XAPI reaches its pool through FBXEN_XAPI_URL: drop --host' });
}

/**
 * The driver of the run. A dry run builds it too: XAPI checks the credentials, the http rule and the CA
 * file for the plan as for the run, and contacts nothing.
 */
export async function makeToolstack(req: MigrateTestRequest, deps: MigrateTestDeps, runner: Runner, run: string): Promise<Toolstack> {
  if (deps.toolstack) return deps.toolstack;
  if (req.toolstack === 'xl') {
    const base = { runner, env: deps.env, backTo: req.backTo ?? hostname() };
    const target = parseHostUrl(req.host?.url);
    if (target.kind === 'local') return new XlDriver(base);
    // The source dom0 over one ssh connection; save-restore's checkpoints go into FBXEN_REMOTE_ROOT/migrate-<run> there.
    const root = deps.env.FBXEN_REMOTE_ROOT || DEFAULT_REMOTE_ROOT;
    const file = (f: string | undefined) => (f === undefined ? undefined : resolve(deps.cwd, f));
    const session = new SshSession(target, { knownHosts: file(req.host?.knownHosts), identity: file(req.host?.identity), remoteRoot: root }, { runner, env: deps.env });
    return new XlDriver({ ...base, remote: { session, root, run: `migrate-${run}` } });
  }
  // Loaded only for --toolstack xapi (a literal path, so tsc checks it).
  const { XapiDriver } = await import('../toolstack/xapi/driver.js');
  const driver = await XapiDriver.open({
    env: deps.env,
    signal: deps.signal,
    cwd: deps.cwd,
    caFile: req.xapi?.caFile,
    insecure: req.xapi?.insecure ?? false,
    insecureHttp: req.xapi?.insecureHttp ?? false,
    destSr: req.destSr,
    warn: (m) => deps.progress.warn(m),
  });
  return driver;
}

/** A Writable that hands each chunk to `write` (the capture's main stream, or one source of it). */
export function sinkOf(write: (chunk: Buffer) => void): Writable {
  return new Writable({
    write(chunk: Buffer, _enc, cb) {
      write(chunk);
      cb();
    },
  });
}

export function makeChannel(req: MigrateTestRequest, deps: MigrateTestDeps, runner: Runner, keyboard: ConsoleKeyboard, capture: ConsoleCapture): GuestChannel {
  if (deps.channel) return deps.channel(keyboard, capture);
  if (req.evidence === 'ssh') {
    return sshChannel({ ssh: req.ssh!, runner, progress: deps.progress, cwd: deps.cwd, signal: deps.signal, collectorScript: req.guestCollector ?? HOST_COLLECTOR, heartbeatScript: req.guestHeartbeat ?? HOST_HEARTBEAT, ...(deps.now ? { now: deps.now } : {}) });
  }
  return consoleChannel({ keyboard, capture, collectorPath: req.guestCollector, heartbeatPath: req.guestHeartbeat, signal: deps.signal, pollMs: deps.pollMs, settleMs: deps.settleMs });
}

export const iterName = (i: number) => `migrate/${i}`;

/** Seconds the guest's heartbeat runs at most, should fbxen never tell it to stop (fbxen killed, host gone). */
export function heartbeatMaxSeconds(req: MigrateTestRequest): number {
  return req.stepTimeoutSec * 3 + (req.rollSeconds ?? 2) * 2 + 60;
}

export async function renderMigratePlan(req: MigrateTestRequest, run: string, dir: string, ts: Toolstack, channel: GuestChannel): Promise<string> {
  const roll = req.rollSeconds ?? 2;
  const hbMax = heartbeatMaxSeconds(req);
  const mode: MigrateMode = req.mode;
  const lines = [
    `# fbxen migrate-test --dry-run: nothing was contacted or run`,
    `run        ${run}`,
    `domain     ${req.domain} (${req.toolstack})`,
    `mode       ${req.mode}${req.mode === 'live' ? `, to ${req.to ?? (req.toolstack === 'xl' ? 'localhost' : 'another pool host')}` : ''}`,
    `iterations ${req.iterations}${req.keepGoing ? ' (--keep-going)' : ' (stop at the first failure)'}`,
    `load       ${req.load}`,
    `evidence   ${req.evidence}`,
    `timeouts   ${req.stepTimeoutSec} s per migration, collection and heartbeat wait`,
    `safety     fbxen never destroys the domain; after a failure or timeout it reports where the domain is${req.toolstack === 'xl' && req.mode === 'live' ? ` (only a paused ${req.domain}--incoming that a failed migration left beside the running source is destroyed)` : ''}`,
    `artifacts  ${dir}/`,
    '',
    '## preflight (a skip, exit 0, only where migration provably does not apply; anything else that stops here is an error)',
    ...(await ts.plan({ step: 'migrate-preflight', domain: req.domain, mode, to: req.to })).map((s) => `- ${s}`),
    `- attach the serial console → ${join(dir, 'console.log')} (every line stamped on arrival)`,
    `- ${channel.planCollect(run, 'pre-migrate')}`,
    '- the guest runs on Xen (probes xen-guest, generic-xenhvm on the pre-migrate bundle): a probe that fails skips; one that cannot tell stops (exit 2)',
    '',
  ];
  for (let i = 1; i <= req.iterations; i++) {
    const hbRun = `${run}-hb${i}`;
    lines.push(`## ${iterName(i)}`);
    lines.push(...channel.planHeartbeat(hbRun, req.load, hbMax).slice(0, 1).map((s) => `- ${s}`));
    lines.push(`- wait up to ${req.stepTimeoutSec} s for ${roll} s of heartbeat`);
    lines.push(...(await ts.plan({ step: 'migrate', domain: req.domain, iteration: i, mode, to: req.to, checkpointDir: dir })).map((s) => `- ${s}`));
    // Only a toolstack whose console must be attached again after a migration says how.
    if (ts.capabilities.consoleAfterMigrate === 'reattach') lines.push(...(await ts.plan({ step: 'attach-console', domain: req.domain, mode, to: req.to })).map((s) => `- ${s}`));
    lines.push(`- wait up to ${req.stepTimeoutSec} s for ${roll} s of heartbeat after the gap`);
    lines.push(...channel.planHeartbeat(hbRun, req.load, hbMax).slice(1).map((s) => `- ${s}`));
    lines.push(`- ${channel.planCollect(run, `post-migrate-${i}`)}`);
    lines.push(`- probes on post-migrate-${i} against ${i === 1 ? 'pre-migrate' : `post-migrate-${i - 1}`}; downtime = largest heartbeat gap → ${join(dir, `heartbeat-${i}.log`)}`);
    lines.push('');
  }
  lines.push('## report', `- ${join(dir, 'report.json')}, ${join(dir, 'report.junit.xml')}${req.junit ? `, ${req.junit}` : ''}, ${join(dir, 'downtime.svg')}`, '');
  return lines.join('\n');
}
