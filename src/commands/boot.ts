/**
 * fbxen boot: flags (over the config file's `boot:` section) → one boot request → the boot flow
 * (core/boot/boot.ts), with the xl or the XAPI driver. Prints where the run's artifacts are, the plan with --dry-run,
 * and the report with --verify. Loaded when the command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import { boot, type BootRequest } from '../core/boot/boot.js';
import type { BootResult } from '../core/boot/types.js';
import { DEFAULT_ARTIFACTS_ROOT } from '../core/run/artifacts.js';
import { CheckFailedError, EvidenceIncompleteError } from '../core/errors.js';
import { BOOT_EXCLUSIVE, BootOptions, commonBootRequest, toXlBootRequest, type BootOptionsT } from './boot-options.js';
import type { CommandContext } from './context.js';
import { labHost } from './lab-host.js';
import { explicitFlags, resolveRequest } from './options.js';

export { BootOptions, type BootOptionsT };

export async function runBoot(o: BootOptionsT, ctx: CommandContext): Promise<BootResult> {
  if (o.toolstack !== 'xapi') {
    for (const flag of ['network', 'sr', 'caFile', 'insecure', 'insecureHttp'] as const) {
      if (o[flag]) ctx.progress.warn(`--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} only applies to --toolstack xapi; ignored`);
    }
  }
  const req: BootRequest =
    o.toolstack === 'xapi'
      ? // unset name: the flow names it from build.json or the file, as for xl
        { ...commonBootRequest(o), toolstack: 'xapi', name: o.name, graceSec: o.grace, xapi: { network: o.network, sr: o.sr, caFile: o.caFile, insecure: o.insecure, insecureHttp: o.insecureHttp } }
      : toXlBootRequest(o);
  if (req.host !== undefined) req.host = await labHost(ctx, req.host);
  return boot(req, { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cleanup: ctx.cleanup, env: ctx.env, cwd: ctx.cwd });
}

export async function bootAction(ctx: CommandContext, command: Command): Promise<void> {
  const o = resolveRequest(BootOptions, 'boot', ctx.configSection('boot'), explicitFlags(command), BOOT_EXCLUSIVE);
  const result = await runBoot(o, ctx);
  if (result.planText !== undefined) {
    ctx.result(result.planText, { dryRun: true, toolstack: result.toolstack, run: result.run, name: result.name, artifactsDir: result.artifactsDir, plan: result.planText });
    return;
  }
  const lines = [
    `${result.name}: ${result.domain.kept ? `running as domain ${result.domain.id} (--keep)` : 'booted, evidence collected, shut down'}`,
    `artifacts: ${result.artifactsDir}`,
    `console:   ${result.consoleLog}`,
  ];
  let verdict: 0 | 1 | 2 = 0;
  let reportJson: unknown;
  if (result.report !== undefined) {
    const verify = await import('../core/verify/index.js');
    lines.push('', verify.renderReportText(result.report).trimEnd());
    verdict = verify.reportExitCode(result.report);
    reportJson = verify.renderReportJson(result.report);
  } else {
    lines.push(`next:      fbxen verify --domain ${result.name}${o.artifacts !== DEFAULT_ARTIFACTS_ROOT ? ` --artifacts ${o.artifacts}` : ''}`);
  }
  const { report: _report, ...rest } = result;
  ctx.result(lines.join('\n'), { ...rest, ...(reportJson !== undefined ? { report: reportJson } : {}) });
  if (verdict === 1) throw new CheckFailedError('verification failed: at least one probe said no', { hint: `see ${result.artifactsDir}/report.json` });
  if (verdict === 2) throw new EvidenceIncompleteError('the evidence allowed no verdict (every probe inconclusive)', { hint: `read ${result.consoleLog}: did the collector run completely?` });
}
