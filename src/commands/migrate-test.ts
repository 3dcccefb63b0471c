/**
 * fbxen migrate-test: flags (over the config file's `migrate-test:` section) → one request → the core
 * migrateTest(). Prints the per-iteration table (or the plan with --dry-run), --json, --junit FILE.
 * Exit 0 all passed (or skipped with the reason), 1 a probe or iteration said no, 2+ no answer.
 * Loaded when the command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { DEFAULT_ARTIFACTS_ROOT } from '../core/run/artifacts.js';
import { migrateTest, renderMigrateJson, renderMigrateText, type MigrateTestRequest } from '../core/migrate/index.js';
import { NAME_PATTERN, NAME_RULE } from '../core/util/names.js';
import type { CommandContext } from './context.js';
import { explicitFlags, resolveRequest } from './options.js';

const name = z.string().regex(NAME_PATTERN, NAME_RULE);
const host = z.string().regex(/^[A-Za-z0-9._:-]{1,253}$/, 'a host name or address');

export const MigrateTestOptions = z
  .object({
    toolstack: z.enum(['xl', 'xapi']).default('xl'),
    domain: name,
    to: host.optional(),
    iterations: z.coerce.number().int().min(1).max(1000).default(10),
    mode: z.enum(['live', 'save-restore']).default('live'),
    load: z.enum(['none', 'disk', 'cpu', 'all']).default('none'),
    keepGoing: z.boolean().default(false),
    evidence: z.enum(['console', 'ssh']).optional(),
    ssh: z.string().regex(/^(?:[A-Za-z0-9._][A-Za-z0-9._-]*@)?(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])$/, 'user@host').optional(),
    identity: z.string().min(1).optional(),
    port: z.coerce.number().int().min(1).max(65535).optional(),
    hostKeyChecking: z.enum(['strict', 'accept-new', 'off']).default('strict'),
    stepTimeout: z.coerce.number().int().min(5).max(86_400).default(600),
    artifacts: z.string().min(1).default(DEFAULT_ARTIFACTS_ROOT),
    runId: name.optional(),
    junit: z.string().min(1).optional(),
    dryRun: z.boolean().default(false),
    guestCollector: z.string().regex(/^\/[A-Za-z0-9._\/-]+$/, 'an absolute path in the guest').optional(),
    guestHeartbeat: z.string().regex(/^\/[A-Za-z0-9._\/-]+$/, 'an absolute path in the guest').optional(),
    destSr: z.string().min(1).optional(),
    backTo: host.optional(),
    caFile: z.string().min(1).optional(),
    insecure: z.boolean().default(false),
    insecureHttp: z.boolean().default(false),
    /** xl: the source dom0, ssh://USER@HOST[:PORT] (checked by the core's parser) */
    host: z.string().min(1).optional(),
    knownHosts: z.string().min(1).optional(),
    hostIdentity: z.string().min(1).optional(),
  })
  .strict()
  .superRefine((o, ctx) => {
    if (o.evidence === 'ssh' && !o.ssh) ctx.addIssue({ code: 'custom', path: ['evidence'], message: 'ssh needs --ssh user@host' });
    if (o.identity !== undefined && !o.ssh) ctx.addIssue({ code: 'custom', path: ['identity'], message: 'only with --ssh' });
    if (o.port !== undefined && !o.ssh) ctx.addIssue({ code: 'custom', path: ['port'], message: 'only with --ssh' });
    if (o.toolstack === 'xl' && (o.destSr || o.caFile || o.insecure)) ctx.addIssue({ code: 'custom', path: [o.destSr ? 'destSr' : o.caFile ? 'caFile' : 'insecure'], message: 'only with --toolstack xapi' });
    if (o.mode === 'save-restore' && o.to !== undefined && o.to !== 'localhost') ctx.addIssue({ code: 'custom', path: ['to'], message: 'save-restore stays on this host: drop --to' });
    if (o.host !== undefined && o.toolstack === 'xapi') ctx.addIssue({ code: 'custom', path: ['host'], message: 'only with --toolstack xl (XAPI reaches its pool through FBXEN_XAPI_URL)' });
    if (o.host === undefined && (o.knownHosts !== undefined || o.hostIdentity !== undefined)) ctx.addIssue({ code: 'custom', path: [o.knownHosts !== undefined ? 'knownHosts' : 'hostIdentity'], message: 'only with --host ssh://...' });
  });
export type MigrateTestOptionsT = z.infer<typeof MigrateTestOptions>;

export function toMigrateRequest(o: MigrateTestOptionsT): MigrateTestRequest {
  return {
    toolstack: o.toolstack,
    domain: o.domain,
    to: o.toolstack === 'xl' ? (o.to ?? 'localhost') : o.to,
    iterations: o.iterations,
    mode: o.mode,
    load: o.load,
    keepGoing: o.keepGoing,
    evidence: o.evidence ?? (o.ssh ? 'ssh' : 'console'),
    ssh: o.ssh ? { target: o.ssh, identity: o.identity, port: o.port, hostKeyChecking: o.hostKeyChecking } : undefined,
    stepTimeoutSec: o.stepTimeout,
    artifactsRoot: o.artifacts,
    runId: o.runId,
    junit: o.junit,
    dryRun: o.dryRun,
    guestCollector: o.guestCollector,
    guestHeartbeat: o.guestHeartbeat,
    destSr: o.destSr,
    backTo: o.backTo,
    xapi: o.toolstack === 'xapi' ? { caFile: o.caFile, insecure: o.insecure, insecureHttp: o.insecureHttp } : undefined,
    host: o.host !== undefined ? { url: o.host, knownHosts: o.knownHosts, identity: o.hostIdentity } : undefined,
  };
}

export async function migrateTestAction(ctx: CommandContext, command: Command): Promise<void> {
  const o = resolveRequest(MigrateTestOptions, 'migrate-test', ctx.configSection('migrate-test'), explicitFlags(command));
  const req = toMigrateRequest(o);
  const out = await migrateTest(req, { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cleanup: ctx.cleanup, env: ctx.env, cwd: ctx.cwd });
  if (out.planText !== undefined) {
    ctx.result(out.planText, { dryRun: true, plan: out.planText });
    return;
  }
  const r = out.report!;
  ctx.result(`${renderMigrateText(r)}${o.junit ? `JUnit: ${o.junit}\n` : ''}`, renderMigrateJson(r));
  if (out.error) throw out.error;
}
