/**
 * fbxen verify: one evidence source (--bundle, --console-log, --ssh or --domain) → the probes → a table,
 * --json, and --junit FILE. Exit 0 when nothing failed, 1 when a probe failed, 2 when no answer was possible.
 * Loaded when the command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { CheckFailedError, EvidenceIncompleteError } from '../core/errors.js';
import { renderReportJson, renderReportText, verify, newManualRunId, RUN_ID, type EvidenceSource } from '../core/verify/index.js';
import { probeIds } from '../probes/index.js';
import type { CommandContext } from './context.js';
import { explicitFlags, resolveRequest } from './options.js';

const token = z.string().regex(RUN_ID, '1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit');

export const VerifyOptions = z
  .object({
    bundle: z.string().min(1).optional(),
    consoleLog: z.string().min(1).optional(),
    ssh: z.string().min(1).optional(),
    domain: z.string().min(1).optional(),
    identity: z.string().min(1).optional(),
    port: z.coerce.number().int().min(1).max(65535).optional(),
    hostKeyChecking: z.enum(['strict', 'accept-new', 'off']).default('strict'),
    toolstack: z.enum(['xl', 'xapi']).optional(),
    artifacts: z.string().min(1).default('fbxen-runs'),
    run: token.optional(),
    phase: token.optional(),
    before: z.string().min(1).optional(),
    beforePhase: token.optional(),
    probe: z.array(z.enum(probeIds as [string, ...string[]])).optional(),
    junit: z.string().min(1).optional(),
    dryRun: z.boolean().default(false),
  })
  .strict()
  .superRefine((o, ctx) => {
    const sources = (['bundle', 'consoleLog', 'ssh', 'domain'] as const).filter((k) => o[k] !== undefined);
    if (sources.length !== 1) {
      ctx.addIssue({ code: 'custom', path: [sources[1] ?? 'bundle'], message: `give exactly one of --bundle, --console-log, --ssh, --domain${sources.length ? ` (got ${sources.map((s) => `--${s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}`).join(', ')})` : ''}` });
    }
    if (o.identity !== undefined && o.ssh === undefined) ctx.addIssue({ code: 'custom', path: ['identity'], message: 'only with --ssh' });
    if (o.toolstack !== undefined && o.domain === undefined) ctx.addIssue({ code: 'custom', path: ['toolstack'], message: 'only with --domain' });
    if (o.before !== undefined && o.beforePhase !== undefined) ctx.addIssue({ code: 'custom', path: ['before'], message: '--before and --before-phase exclude each other' });
  });
export type VerifyOptionsT = z.infer<typeof VerifyOptions>;

export function toSource(o: VerifyOptionsT): EvidenceSource {
  if (o.bundle !== undefined) return { kind: 'bundle', path: o.bundle, run: o.run };
  if (o.consoleLog !== undefined) return { kind: 'console', path: o.consoleLog, run: o.run, phase: o.phase };
  if (o.ssh !== undefined) return { kind: 'ssh', target: o.ssh, identity: o.identity, port: o.port, hostKeyChecking: o.hostKeyChecking, run: o.run ?? newManualRunId(), phase: o.phase ?? 'manual' };
  return { kind: 'domain', name: o.domain!, artifactsRoot: o.artifacts, toolstack: o.toolstack, phase: o.phase };
}

/** A source given as a flag drops the config file's other source (and the options that go with it). */
export const VERIFY_EXCLUSIVE = [
  [['bundle'], ['consoleLog'], ['ssh', 'identity', 'port', 'hostKeyChecking'], ['domain', 'toolstack']],
  [['before'], ['beforePhase']],
] as const;

export async function verifyAction(ctx: CommandContext, command: Command): Promise<void> {
  const o = resolveRequest(VerifyOptions, 'verify', ctx.configSection('verify'), explicitFlags(command), VERIFY_EXCLUSIVE);
  const outcome = await verify(
    {
      source: toSource(o),
      before: o.before !== undefined ? { path: o.before } : o.beforePhase !== undefined ? { phase: o.beforePhase } : undefined,
      only: o.probe,
      junit: o.junit,
      dryRun: o.dryRun,
    },
    { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cwd: ctx.cwd },
  );
  if (outcome.plan) {
    ctx.result(outcome.plan.join('\n'), { dryRun: true, plan: outcome.plan });
    return;
  }
  const report = outcome.report!;
  ctx.result(`evidence: ${outcome.from}\n${renderReportText(report)}${o.junit ? `JUnit: ${o.junit}\n` : ''}${outcome.reportDir ? `reports: ${outcome.reportDir}/report.json, report.junit.xml\n` : ''}`, renderReportJson(report));
  if (outcome.exitCode === 1) {
    const failed = report.results.filter((r) => r.verdict === 'fail').map((r) => r.id);
    throw new CheckFailedError(`verification failed: ${failed.join(', ')}`, { hint: 'see the hints in the report above' });
  }
  if (outcome.exitCode === 2) {
    throw new EvidenceIncompleteError('the evidence allowed no verdict: every probe was inconclusive or skipped', { hint: 'check that the collector ran completely (see the index of the bundle), then collect again' });
  }
}
