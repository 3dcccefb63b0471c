/** fbxen build: flags → BuildRequest → core build(); prints the outputs, or the plan with --dry-run. */
import { Option, type Command } from 'commander';
import { z } from 'zod';
import { buildCommand, type BuildCommandRequest } from '../core/build/index.js';
import { FORMAT_NAMES } from '../core/build/formats.js';
import { DEFAULT_MIRROR } from '../core/build/sets.js';
import { XZ_DECODERS } from '../core/build/xz-decoder.js';
import type { CommandContext } from './context.js';
import { explicitFlags, parseSize, resolveRequest } from './options.js';

const size = (what: string) =>
  z.union([z.number().int().nonnegative(), z.string()]).transform((v, ctx) => {
    if (typeof v === 'number') return v * 1024 * 1024;
    try {
      return parseSize(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: `${what}: ${(err as Error).message}` });
      return z.NEVER;
    }
  });

export const BuildOptions = z
  .object({
    release: z.string().regex(/^\d+\.\d+-[A-Z0-9-]+$/, 'a release name such as 14.3-RELEASE').optional(),
    arch: z.enum(['amd64', 'i386']).default('amd64'),
    mirror: z.string().url().default(DEFAULT_MIRROR),
    dist: z.string().min(1).optional(),
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/, 'letters, digits, ".", "_" and "-", starting with a letter or digit').optional(),
    out: z.string().min(1).default('out'),
    format: z
      .union([z.string(), z.array(z.string())])
      .default('raw,qcow2')
      .transform((v) => (Array.isArray(v) ? v : v.split(',')).map((s) => s.trim()).filter(Boolean))
      .pipe(z.array(z.enum(FORMAT_NAMES as [string, ...string[]])).min(1)),
    size: size('size').optional(),
    diskSize: size('disk-size').optional(),
    swap: size('swap').default(1024 * 1024 * 1024),
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
  .refine((o) => (o.release === undefined) !== (o.dist === undefined), { message: 'give either --release (with --arch) or --dist, not both and not neither', path: ['release'] });

export function registerBuild(program: Command, context: () => CommandContext): void {
  program
    .command('build')
    .description('build a FreeBSD GENERIC image for Xen from the release sets (no root, no staging tree)')
    .option('--release <name>', 'FreeBSD release to fetch, e.g. 14.3-RELEASE')
    .addOption(new Option('--arch <arch>', 'architecture (default amd64)').choices(['amd64', 'i386']))
    .option('--mirror <url>', `FreeBSD mirror (default ${DEFAULT_MIRROR})`)
    .option('--dist <dir|url>', 'a directory or URL holding MANIFEST, base.txz and kernel.txz')
    .option('--name <name>', 'image name (default freebsd-<release>-<arch>)')
    .option('--out <dir>', 'output directory (default ./out)')
    .option('--format <list>', `output formats, comma-separated: ${FORMAT_NAMES.join(', ')} (default raw,qcow2)`)
    .option('--size <size>', 'root file system size (default: content plus headroom; growfs grows it at first boot)')
    .option('--disk-size <size>', 'disk size (default 6G, or what the content needs)')
    .option('--swap <size>', 'swap partition size, 0 for none (default 1G)')
    .option('--uefi', 'add an EFI system partition with /boot/loader.efi')
    .option('--hostname <name>', 'the guest host name (default: the image name)')
    .option('--overlay <dir>', 'a directory copied over the image (owner root:wheel, modes kept)')
    .option('--allow-non-xen-kernel', 'build even when the kernel lacks options XENHVM / device xenpci')
    .option('--no-cache', 'do not keep decompressed sets in the cache')
    .option('--cache-dir <dir>', 'cache directory (default $XDG_CACHE_HOME/fbxen or ~/.cache/fbxen)')
    .addOption(new Option('--xz-decoder <program>', 'what decompresses the sets: auto is 7zz when on PATH (faster), else xz').choices([...XZ_DECODERS]))
    .option('--check-reproducible', 'build twice and compare the outputs byte for byte')
    .option('--dry-run', 'print what would be fetched, run and written, and stop')
    .option('--vcpus <n>', 'vCPUs recorded in an XVA (default 2)')
    .option('--memory <MiB>', 'memory recorded in an XVA (default 1024)')
    .action(async (_opts, cmd: Command) => {
      const ctx = context();
      const flags = explicitFlags(cmd);
      const o = resolveRequest(BuildOptions, 'build', ctx.configSection('build'), flags);
      const request: BuildCommandRequest = { ...o, env: ctx.env, cwd: ctx.cwd };
      const result = await buildCommand(request, { runner: ctx.runner, progress: ctx.progress, signal: ctx.signal, cleanup: ctx.cleanup });
      ctx.result(result.human, result.json);
      if (result.failed) throw result.failed;
    });
}
