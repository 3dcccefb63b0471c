/**
 * The options of `fbxen boot` (flags over the config file's `boot:` section), shared by the commands that
 * take them: `boot`, and `config xl`, which renders the xl.cfg that boot would use.
 */
import { z } from 'zod';
import type { BootRequest } from '../core/boot/prepare.js';
import { DEFAULT_ARTIFACTS_ROOT, RUN_ID_PATTERN } from '../core/run/artifacts.js';
import { parseSize } from './options.js';

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
    /** xl on another dom0: ssh://USER@HOST[:PORT] (checked by the core's parser); unset or localhost: this machine */
    host: z.string().min(1).optional(),
    knownHosts: z.string().min(1).optional(),
    identity: z.string().min(1).optional(),
    type: z.enum(['hvm', 'pvh']).default('hvm'),
    kernel: z.string().min(1).optional(),
    // repeatable on the command line; in fbxen.yaml a list, or one KEY=VALUE
    kernelEnv: z.union([z.string().transform((v) => [v]), z.array(z.string()).max(256)]).optional(),
  })
  .strict()
  .refine((o) => !(o.iso !== undefined && o.emptyCdrom), { message: '--iso and --empty-cdrom exclude each other', path: ['iso'] })
  .refine((o) => o.toolstack !== 'xapi' || o.host === undefined, { message: '--host is the dom0 of --toolstack xl; XAPI reaches its pool through FBXEN_XAPI_URL', path: ['host'] })
  .refine((o) => o.host !== undefined || (o.knownHosts === undefined && o.identity === undefined), { message: 'only with --host ssh://...', path: ['knownHosts'] })
  // An HVM guest is started by its own loader from the image: a kernel given here would be silently unused.
  .refine((o) => o.type === 'pvh' || (o.kernel === undefined && o.kernelEnv === undefined), { message: 'only a PVH guest boots a given kernel (HVM starts the image\'s loader); add --type pvh', path: ['kernel'] });
export type BootOptionsT = z.infer<typeof BootOptions>;

/** A flag --iso drops a config `empty-cdrom:`, and the reverse. */
export const BOOT_EXCLUSIVE = [[['iso'], ['emptyCdrom']]] as const;

/** The xl request for these options (also what `fbxen config xl` renders). */
export function toXlBootRequest(o: z.infer<typeof BootOptions>): BootRequest {
  return {
    ...commonBootRequest(o),
    toolstack: 'xl',
    name: o.name,
    bridge: o.bridge,
    graceSec: o.grace,
    ...(o.host !== undefined ? { host: { url: o.host, knownHosts: o.knownHosts, identity: o.identity } } : {}),
  };
}

/** What every toolstack's boot request says the same way. */
export function commonBootRequest(o: z.infer<typeof BootOptions>) {
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
    type: o.type,
    kernel: o.kernel,
    kernelEnv: o.kernelEnv,
  };
}
