/**
 * fbxen boot: flags (over the config file's `boot:` section) → one boot request → bootWithXl, or the
 * XenServer driver for --toolstack xapi. Prints where the run's artifacts are, the plan with --dry-run,
 * and the report with --verify. Loaded when the command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { bootWithXl, type XlBootRequest } from '../core/boot/xl-boot.js';
import type { BootResult } from '../core/boot/types.js';
import { DEFAULT_ARTIFACTS_ROOT, RUN_ID_PATTERN } from '../core/boot/artifacts.js';
import { CheckFailedError, EnvironmentError, EvidenceIncompleteError } from '../core/errors.js';
import type { CommandContext } from './context.js';
import { explicitFlags, parseSize, resolveRequest } from './options.js';

const mebibytes = z.union([z.number(), z.string()]).transform((v, ctx) => {
  if (typeof v === 'number') return v;
  try {
    return parseSize(v, 'M') / (1024 * 1024);
  } catch (err) {
    ctx.addIssue({ code: 'custom', message: (err as Error).message });
    return z.NEVER;
  }
});

/** The boot request as flags and the config file give it; xl-specific checks happen in the core. */
export const BootOptions = z
  .object({
    toolstack: z.enum(['xl', 'xapi']).default('xl'),
    image: z.string({ error: 'required: the image to boot (out/NAME.raw or .qcow2 from `fbxen build`)' }).min(1),
    name: z.string().min(1).optional(),
    vcpus: z.coerce.number().int('a whole number of vCPUs').min(1).max(128).default(2),
    memory: mebibytes.pipe(z.number().int('whole MiB').min(128).max(1024 * 1024)).default(1024),
    bridge: z.string().min(1).default('xenbr0'),
    iso: z.string().min(1).optional(),
    emptyCdrom: z.boolean().default(false),
    keep: z.boolean().default(false),
    timeout: z.coerce.number().int().min(1).max(86_400).default(600),
    grace: z.coerce.number().int().min(0).max(3600).default(60),
    dryRun: z.boolean().default(false),
    verify: z.boolean().default(false),
    artifacts: z.string().min(1).default(DEFAULT_ARTIFACTS_ROOT),
    runId: z.string().regex(RUN_ID_PATTERN, '1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit').optional(),
    network: z.string().min(1).optional(),
    sr: z.string().min(1).optional(),
    caFile: z.string().min(1).optional(),
    insecure: z.boolean().default(false),
    insecureHttp: z.boolean().default(false),
  })
  .strict()
  .refine((o) => !(o.iso !== undefined && o.emptyCdrom), { message: '--iso and --empty-cdrom exclude each other', path: ['iso'] });
export type BootOptionsT = z.infer<typeof BootOptions>;

/** A flag --iso drops a config `empty-cdrom:`, and the reverse. */
export const BOOT_EXCLUSIVE = [[['iso'], ['emptyCdrom']]] as const;

interface XapiModule {
  bootWithXapi(request: Record<string, unknown>, deps: { runner: unknown; progress: unknown; signal: AbortSignal; cleanup: unknown; env: NodeJS.ProcessEnv }): Promise<BootResult>;
}

export async function runBoot(o: BootOptionsT, ctx: CommandContext): Promise<BootResult> {
  if (o.toolstack === 'xapi') {
    const modulePath = '../core/toolstack/xapi/boot.js'; // loaded on demand: xl users never load XAPI code
    const xapi = (await import(modulePath).catch((err: unknown) => {
      throw new EnvironmentError(`the XenServer driver is not available in this build: ${(err as Error).message}`, { hint: 'use --toolstack xl, or install a complete fbxen' });
    })) as XapiModule;
    return xapi.bootWithXapi(
      {
        ...commonBootRequest(o),
        name: o.name, // unset: the driver names it from build.json or the file, as xl does
        network: o.network,
        sr: o.sr,
        caFile: o.caFile,
        insecure: o.insecure,
        insecureHttp: o.insecureHttp,
      },
      { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cleanup: ctx.cleanup, env: ctx.env },
    );
  }
  for (const flag of ['network', 'sr', 'caFile', 'insecure', 'insecureHttp'] as const) {
    if (o[flag]) ctx.progress.warn(`--${flag.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} only applies to --toolstack xapi; ignored`);
  }
  return bootWithXl(
    toXlBootRequest(o),
    { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cleanup: ctx.cleanup, env: ctx.env, cwd: ctx.cwd },
  );
}

/** The xl request for these options (also what `fbxen config xl` renders). */
export function toXlBootRequest(o: z.infer<typeof BootOptions>): XlBootRequest {
  return { ...commonBootRequest(o), name: o.name, bridge: o.bridge, graceSec: o.grace };
}

/** What every toolstack's boot request says the same way. */
function commonBootRequest(o: z.infer<typeof BootOptions>) {
  return {
    image: o.image,
    runId: o.runId,
    vcpus: o.vcpus,
    memoryMiB: o.memory,
    iso: o.iso,
    emptyCdrom: o.emptyCdrom,
    keep: o.keep,
    timeoutSec: o.timeout,
    dryRun: o.dryRun,
    verify: o.verify,
    artifactsRoot: o.artifacts,
  };
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
