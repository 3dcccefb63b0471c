/**
 * `--host lab` (and `host: lab` in fbxen.yaml) for boot, migrate-test and config xl: the running lab's
 * dom0 as the ssh transport's host (ssh://root@127.0.0.1:PORT, the lab's key, its pinned known_hosts).
 * Resolved once, where the command turns its flags into a request, so that everything after it (the
 * plan, the driver, the dry run) sees an ordinary ssh host.
 */
import { UsageError } from '../errors.js';
import { formatHostUrl } from '../exec/ssh-target.js';
import { defaultLabDir } from './paths.js';
import { resolveLabTarget, sessionTarget } from './target.js';

/** The --host value that names the lab. */
export const LAB_HOST = 'lab';

export interface HostOption {
  url: string;
  knownHosts?: string | undefined;
  identity?: string | undefined;
}

export interface ResolvedLabHost extends HostOption {
  url: string;
  knownHosts: string;
  identity: string;
  /** The lab directory whose state gave the target (for the line the run prints). */
  labDir: string;
}

/**
 * `host` unchanged unless it is the lab; then the lab's ssh target, or the lab's own error (no lab,
 * QEMU gone, still coming up: each with its fix). The lab brings its key and known_hosts: a
 * --known-hosts or --identity next to --host lab is refused rather than silently ignored.
 */
export async function resolveHostOption<H extends HostOption | undefined>(
  host: H,
  options: { labDir?: string | undefined; env?: NodeJS.ProcessEnv; flags?: { knownHosts: string; identity: string } },
): Promise<H | ResolvedLabHost> {
  if (host === undefined || host.url !== LAB_HOST) return host;
  const flags = options.flags ?? { knownHosts: '--known-hosts', identity: '--identity' };
  for (const [key, flag] of [['knownHosts', flags.knownHosts], ['identity', flags.identity]] as const) {
    if (host[key] !== undefined) throw new UsageError(`${flag} has no meaning with --host lab: the lab brings its own key and pinned known_hosts`, { hint: `drop ${flag}, or give --host ssh://root@HOST[:PORT] for another dom0` });
  }
  const labDir = options.labDir ?? defaultLabDir(options.env ?? process.env);
  const { target, options: ssh } = sessionTarget(await resolveLabTarget({ dir: labDir }));
  return { url: formatHostUrl(target), knownHosts: ssh.knownHosts, identity: ssh.identity, labDir };
}

/** The lab directory the config file's `lab:` section names (`dir:`), if it names one. */
export function configLabDir(section: Record<string, unknown>): string | undefined {
  const dir = section.dir;
  if (dir === undefined) return undefined;
  if (typeof dir !== 'string' || dir.length === 0) throw new UsageError('fbxen.yaml: lab.dir must be a directory path', { hint: 'give lab: { dir: /path/to/lab } or drop it for the default (~/.cache/fbxen/lab)' });
  return dir;
}
