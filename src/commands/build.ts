/**
 * fbxen build: flags → BuildRequest → core build(); prints the outputs, or the plan with --dry-run.
 * Loaded when the command runs (its options are registered in ./index.ts).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { buildCommand, type BuildCommandRequest } from '../core/imaging/index.js';
import { FORMAT_NAMES } from '../core/imaging/formats.js';
import { DEFAULT_MIRROR } from '../core/imaging/sets.js';
import { XZ_DECODERS } from '../core/imaging/xz-decoder.js';
import { NAME_PATTERN } from '../core/util/names.js';
import type { CommandContext } from './context.js';
import { explicitFlags, parseSize, resolveRequest } from './options.js';

const size = () =>
  z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
    if (typeof v === 'number') return v * 1024 * 1024;
    try {
      return parseSize(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const BuildOptions = z
  .object({
    release: z.string().regex(/^\d+\.\d+-[A-Z0-9-]+$/, 'a release name such as 14.3-RELEASE').optional(),
    releaseName: z.string().regex(/^\d+\.\d+-[A-Z0-9-]+$/, 'a release name such as 14.3-RELEASE').optional(),
    arch: z.enum(['amd64', 'i386']).default('amd64'),
    mirror: z.string().url().default(DEFAULT_MIRROR),
    dist: z.string().min(1).optional(),
    name: z.string().regex(NAME_PATTERN, 'letters, digits, ".", "_" and "-", starting with a letter or digit').optional(),
    out: z.string().min(1).default('out'),
    format: z
      .union([z.string(), z.array(z.string())])
      .default('raw,qcow2')
      .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean))
      .pipe(z.array(z.enum(FORMAT_NAMES as [string, ...string[]])).min(1)),
    size: size().optional(),
    diskSize: size().optional(),
    swap: size().default(1024 * 1024 * 1024),
    uefi: z.boolean().default(false),
    hostname: z.string().regex(/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/, 'a host name').optional(),
    overlay: z.string().min(1).optional(),
    allowNonXenKernel: z.boolean().default(false),
    cache: z.boolean().default(true),
    cacheDir: z.string().min(1).optional(),
    xzDecoder: z.enum(XZ_DECODERS).default('auto'),
    checkReproducible: z.boolean().default(false),
    dryRun: z.boolean().default(false),
    vcpus: z.coerce.number().int().min(1).max(128).default(2),
    memory: z.coerce.number().int().min(128).default(1024),
  })
  .strict()
  .refine((o) => (o.release === undefined) !== (o.dist === undefined), { message: 'give either --release (with --arch) or --dist, not both and not neither', path: ['release'] })
  .refine((o) => o.releaseName === undefined || o.dist !== undefined, { message: '--release-name names the sets of --dist; with --release the release is already named', path: ['releaseName'] });

/** A config `release:` gives way to a --dist flag, and the reverse. */
export const BUILD_EXCLUSIVE = [[['release'], ['dist', 'releaseName']]] as const;

export async function buildAction(ctx: CommandContext, cmd: Command): Promise<void> {
  const o = resolveRequest(BuildOptions, 'build', ctx.configSection('build'), explicitFlags(cmd), BUILD_EXCLUSIVE);
  const request: BuildCommandRequest = { ...o, env: ctx.env, cwd: ctx.cwd };
  const result = await buildCommand(request, { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cleanup: ctx.cleanup });
  ctx.result(result.human, result.json);
  if (result.failed) throw result.failed;
}
