/**
 * Runs Debian's real xl parser on generated configs, without a hypervisor: `xl -N create -d CFG` under the
 * LD_PRELOAD simulation in xl-dryrun-shim.c prints the libxl domain config as JSON; xlu-disk-parse runs
 * disk specs through libxlutil. Both are built once per test process by build.sh.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REAL_XL = '/usr/lib/xen-4.17/bin/xl';
const here = dirname(fileURLToPath(import.meta.url));

let built: string | undefined;

/** Builds the shim and the disk-spec parser (cc + libxen-dev); throws with the fix when a tool is missing. */
export function buildXlHelpers(): string {
  if (built) return built;
  if (!existsSync(REAL_XL)) throw new Error(`${REAL_XL} is missing: apt-get install xen-utils-4.17 (the real parser checks every golden config)`);
  const out = mkdtempSync(join(tmpdir(), 'fbxen-xl-preload-'));
  execFileSync('sh', [join(here, 'build.sh'), out], { stdio: ['ignore', 'pipe', 'pipe'] });
  built = out;
  return out;
}

export interface DryRun {
  status: number;
  json: unknown;
  stdout: string;
  stderr: string;
  /** stderr lines other than the ones xl always prints on success. */
  unexpectedStderr: string[];
}

/** `xl -N create -d CFG` (CFG must be absolute, as xl(1) asks). */
export function xlDryRun(configPath: string): DryRun {
  const dir = buildXlHelpers();
  const r = spawnSync(REAL_XL, ['-N', 'create', '-d', configPath], {
    env: { ...process.env, LD_PRELOAD: join(dir, 'xl-dryrun-shim.so') },
    encoding: 'utf8',
    timeout: 30_000,
  });
  const stderrLines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  const unexpectedStderr = stderrLines.filter((l) => l !== `Parsing config from ${configPath}`);
  let json: unknown;
  try {
    json = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
  } catch {
    json = undefined;
  }
  return { status: r.status ?? -1, json, stdout: r.stdout, stderr: r.stderr, unexpectedStderr };
}

export type DiskParse = { ok: true; disk: Record<string, unknown> } | { ok: false; message: string };

/** Runs each spec through libxlutil's xlu_disk_parse. */
export function xluDiskParse(specs: readonly string[]): DiskParse[] {
  const dir = buildXlHelpers();
  const r = spawnSync(join(dir, 'xlu-disk-parse'), [...specs], { encoding: 'utf8', timeout: 30_000 });
  const lines = r.stdout.split('\n').filter(Boolean);
  const errors = r.stderr.split('\n').filter(Boolean);
  let e = 0;
  return lines.map((line) => (line.startsWith('OK ') ? { ok: true as const, disk: JSON.parse(line.slice(3)) as Record<string, unknown> } : { ok: false as const, message: errors[e++] ?? line }));
}
