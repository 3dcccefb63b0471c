/**
 * Where a lab lives: one directory (default $XDG_CACHE_HOME/fbxen/lab, else ~/.cache/fbxen/lab) holding
 * the cached images (images/KEY/), the running lab's state, known_hosts and serial log.
 */
import { homedir } from 'node:os';
import { isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export function defaultLabDir(env: NodeJS.ProcessEnv = process.env): string {
  const cache = env.XDG_CACHE_HOME && isAbsolute(env.XDG_CACHE_HOME) ? env.XDG_CACHE_HOME : join(env.HOME || homedir(), '.cache');
  return join(cache, 'fbxen', 'lab');
}

export interface LabPaths {
  dir: string;
  state: string;
  knownHosts: string;
  serialLog: string;
  pidFile: string;
  images: string;
  image(key: string): LabImagePaths;
}

export interface LabImagePaths {
  dir: string;
  disk: string;
  xen: string;
  kernel: string;
  initrd: string;
  identity: string;
  hostKeyPub: string;
  versions: string;
  manifest: string;
}

/** Images are named by the first 16 hex digits of their key (the manifest holds all 64). */
export function labPaths(dir: string, cwd = process.cwd()): LabPaths {
  const d = resolve(cwd, dir);
  const images = join(d, 'images');
  return {
    dir: d,
    state: join(d, 'state.json'),
    knownHosts: join(d, 'known_hosts'),
    serialLog: join(d, 'serial.log'),
    pidFile: join(d, 'qemu.pid'),
    images,
    image(key: string): LabImagePaths {
      const id = join(images, key.slice(0, 16));
      return {
        dir: id,
        disk: join(id, 'dom0.img'),
        xen: join(id, 'xen'),
        kernel: join(id, 'vmlinuz'),
        initrd: join(id, 'initrd.gz'),
        identity: join(id, 'id_ed25519'),
        hostKeyPub: join(id, 'ssh_host_ed25519_key.pub'),
        versions: join(id, 'versions.txt'),
        manifest: join(id, 'manifest.json'),
      };
    },
  };
}

/** scripts/lab of the package: three levels above this module in src/ (vitest) and in dist/. */
export function labScriptsDir(): string {
  return fileURLToPath(new URL('../../../scripts/lab/', import.meta.url)).replace(/\/$/, '');
}

/** The scripts that go into the image, in the key. */
export const LAB_SCRIPTS = ['build-image.sh', 'customize.sh', 'dom0-init.sh', 'initramfs-init.sh'] as const;
