/**
 * fbxen verify: one evidence source (--bundle, --console-log, --ssh or --domain) → the probes → a table,
 * --json, and --junit FILE. Exit 0 when nothing failed, 1 when a probe failed, 2 when no answer was possible.
 */
import { Option, type Command } from 'commander';
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
  if (o.bundle !== undefined) return { kind: 'bundle', path: o.bundle };
  if (o.consoleLog !== undefined) return { kind: 'console', path: o.consoleLog, run: o.run, phase: o.phase };
  if (o.ssh !== undefined) return { kind: 'ssh', target: o.ssh, identity: o.identity, port: o.port, hostKeyChecking: o.hostKeyChecking, run: o.run ?? newManualRunId(), phase: o.phase ?? 'manual' };
  return { kind: 'domain', name: o.domain!, artifactsRoot: o.artifacts, toolstack: o.toolstack, phase: o.phase };
}

const collect = (value: string, previous: string[] | undefined) => [...(previous ?? []), value];

export function registerVerify(program: Command, context: () => CommandContext): void {
  program
    .command('verify')
    .description('verify Xen PVHVM support from the evidence a FreeBSD guest collected (fbxen-bundle/1)')
    .option('--bundle <dir|tar>', 'a bundle directory, .tar or .tar.gz written by fbxen-collect')
    .option('--console-log <file>', 'a serial console log holding the framed bundle')
    .option('--ssh <user@host>', 'run the collector in the guest over ssh (streamed to sh -s)')
    .option('--domain <name>', 'the latest `fbxen boot` run of this domain (its console.log)')
    .option('--identity <file>', 'ssh private key for --ssh')
    .option('--port <n>', 'ssh port for --ssh')
    .addOption(new Option('--host-key-checking <mode>', 'ssh host key checking (default strict)').choices(['strict', 'accept-new', 'off']))
    .addOption(new Option('--toolstack <name>', 'with --domain: the toolstack the run used').choices(['xl', 'xapi']))
    .option('--artifacts <dir>', 'root of the fbxen boot run directories (default ./fbxen-runs)')
    .option('--run <id>', 'the run id to look for (console log) or to give the collector (ssh)')
    .option('--phase <phase>', 'the phase to look for (console log) or to give the collector (ssh)')
    .option('--before <dir|tar>', 'a bundle taken before a migration (enables the migration probe)')
    .option('--before-phase <phase>', 'with --console-log: the frame of this phase is the before bundle')
    .option('--probe <id>', `run only this probe (repeatable): ${probeIds.join(', ')}`, collect)
    .option('--junit <file>', 'also write a JUnit XML report')
    .option('--dry-run', 'print what would be read and run, do nothing')
    .action(async (_opts, command: Command) => {
      const ctx = context();
      const o = resolveRequest(VerifyOptions, 'verify', ctx.configSection('verify'), explicitFlags(command));
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
    });
}
