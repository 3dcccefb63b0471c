/**
 * The dom0 image in the lab's cache: found by its key, or built by scripts/lab/build-image.sh
 * (mmdebstrap, the customize hook, mke2fs -d) into a temporary directory renamed into place when whole.
 */
import { mkdir, readFile, readdir, rm, statfs, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvironmentError } from '../errors.js';
import type { Runner } from '../exec/runner.js';
import { onPath } from '../exec/runner.js';
import { formatBytes, type Progress } from '../progress.js';
import { withAtomicOutput } from '../util/atomic.js';
import { imageKey, LAB_PACKAGES, LAB_SUITE, parseAptPolicy, VERSIONED_PACKAGES, type ImageInputs } from './image-key.js';
import { LAB_SCRIPTS, labScriptsDir, type LabImagePaths, type LabPaths } from './paths.js';

/** Tools the lab runs, with the Debian package that has each (scripts/lab-setup.sh installs them all). */
export const LAB_TOOLS: Readonly<Record<string, string>> = {
  mmdebstrap: 'mmdebstrap',
  mke2fs: 'e2fsprogs',
  tar: 'tar',
  fakeroot: 'fakeroot',
  newuidmap: 'uidmap',
  'ssh-keygen': 'openssh-client',
  ssh: 'openssh-client',
  'qemu-system-x86_64': 'qemu-system-x86',
};

/** The tools `lab up` needs that are not on PATH, as an error naming their packages. */
export function missingTools(needed: readonly string[], env: NodeJS.ProcessEnv): EnvironmentError | undefined {
  // mke2fs lives in /usr/sbin, which a non-root PATH may lack.
  const path = { ...env, PATH: `${env.PATH ?? ''}:/usr/sbin:/sbin` };
  const missing = needed.filter((t) => !onPath(t, path));
  if (!missing.length) return undefined;
  const pkgs = [...new Set(missing.map((t) => LAB_TOOLS[t] ?? t))];
  return new EnvironmentError(`the lab needs ${missing.map((t) => `${t} (Debian package ${LAB_TOOLS[t] ?? t})`).join(', ')}, not found on PATH`, {
    hint: `run scripts/lab-setup.sh, or: apt-get install ${pkgs.join(' ')}`,
  });
}

/**
 * What build-image.sh runs here. As a user (not root) mmdebstrap needs a user namespace (newuidmap) and the
 * root is packed under fakeroot, so that dom0's files are root's in the image.
 */
export function buildTools(uid: number): string[] {
  return ['mmdebstrap', 'mke2fs', 'tar', 'ssh-keygen', ...(uid === 0 ? [] : ['newuidmap', 'fakeroot'])];
}

/** About what a build takes: in TMPDIR the mmdebstrap chroot, then the root's tar and its unpacked copy (about 1 GiB each); the sparse image and its files in the lab. */
export const BUILD_TMP_BYTES = 3 * 1024 ** 3;
export const BUILD_LAB_BYTES = 2 * 1024 ** 3;

export async function checkSpace(dir: string, need: number, what: string): Promise<void> {
  let free: number;
  try {
    const s = await statfs(dir);
    free = Number(s.bavail) * Number(s.bsize);
  } catch {
    return; // statfs unsupported: the build's own error will say it
  }
  if (free < need) {
    throw new EnvironmentError(`no space for the lab image: ${formatBytes(free)} free in ${dir} (${what}), the build needs about ${formatBytes(need)}`, {
      hint: what === 'TMPDIR' ? 'free space there, or point TMPDIR at a larger file system' : 'free space there, or give --dir on a larger file system',
    });
  }
}

export interface ImageManifest {
  key: string;
  builtAt: string;
  buildSeconds: number;
  inputs: ImageInputs;
}

/** The key's inputs: the package list, the scripts' bytes, and the versions apt offers now. */
export async function imageInputs(runner: Runner, signal?: AbortSignal): Promise<ImageInputs> {
  const dir = labScriptsDir();
  const scripts: Record<string, string> = {};
  for (const name of LAB_SCRIPTS) scripts[name] = await readFile(join(dir, name), 'utf8');
  let versions: Record<string, string> = {};
  if (onPath('apt-cache')) {
    const r = await runner.run('apt-cache', ['policy', ...VERSIONED_PACKAGES], { allowFailure: true, timeoutMs: 60_000, signal });
    versions = parseAptPolicy(r.stdout);
  }
  const known: Record<string, string> = {};
  for (const p of VERSIONED_PACKAGES) known[p] = versions[p] ?? 'unknown';
  return { suite: LAB_SUITE, mirror: '', packages: LAB_PACKAGES, scripts, versions: known };
}

export async function readManifest(image: LabImagePaths): Promise<ImageManifest | undefined> {
  try {
    const m = JSON.parse((await readFile(image.manifest, 'utf8')).slice(0, 1 << 20)) as ImageManifest;
    return typeof m.key === 'string' && typeof m.buildSeconds === 'number' ? m : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The image for these inputs: the cached one, or a new build (progress shows mmdebstrap's steps). A
 * successful build removes the lab's other images (each is about 1.3 GB on disk).
 */
export async function ensureImage(
  paths: LabPaths,
  inputs: ImageInputs,
  deps: { runner: Runner; progress: Progress; signal?: AbortSignal; env: NodeJS.ProcessEnv; /** injected for tests */ uid?: number },
): Promise<{ image: LabImagePaths; key: string; built: boolean; manifest: ImageManifest }> {
  const key = imageKey(inputs);
  const image = paths.image(key);
  const cached = await readManifest(image);
  if (cached && cached.key === key) return { image, key, built: false, manifest: cached };

  const missing = missingTools(buildTools(deps.uid ?? process.getuid?.() ?? 0), deps.env);
  if (missing) throw missing;
  await mkdir(paths.images, { recursive: true });
  await checkSpace(paths.images, BUILD_LAB_BYTES, 'the lab directory');
  await checkSpace(deps.env.TMPDIR || tmpdir(), BUILD_TMP_BYTES, 'TMPDIR');

  const started = Date.now();
  const manifest = await deps.progress.step(`build the dom0 image ${key.slice(0, 16)} (mmdebstrap bookworm: 1.5 minutes on an idle 2-core machine, up to 6 loaded)`, (handle) =>
    withAtomicOutput(image.dir, async (tmp) => {
      await mkdir(tmp);
      await deps.runner.run('sh', [join(labScriptsDir(), 'build-image.sh'), tmp, labScriptsDir(), inputs.suite, inputs.packages.join(','), inputs.mirror], {
        signal: deps.signal,
        // TMPDIR: where the chroot, the root's tar and its unpacked copy go (checkSpace looked there)
        env: { PATH: `${deps.env.PATH ?? ''}:/usr/sbin:/sbin`, ...(deps.env.TMPDIR ? { TMPDIR: deps.env.TMPDIR } : {}) },
        timeoutMs: 60 * 60_000,
        onStderrLine: (line) => handle.output(`${Math.round((Date.now() - started) / 1000)} s: ${line.slice(0, 200)}`),
      });
      const m: ImageManifest = { key, builtAt: new Date().toISOString(), buildSeconds: Math.round((Date.now() - started) / 100) / 10, inputs: { ...inputs, scripts: Object.fromEntries(Object.keys(inputs.scripts).map((k) => [k, `${inputs.scripts[k]!.length} bytes`])) } };
      await writeFile(join(tmp, 'manifest.json'), `${JSON.stringify(m, null, 2)}\n`);
      return m;
    }),
  );
  for (const name of await readdir(paths.images)) {
    if (name !== key.slice(0, 16) && /^[0-9a-f]{16}$/.test(name)) await rm(join(paths.images, name), { recursive: true, force: true });
  }
  return { image, key, built: true, manifest };
}
