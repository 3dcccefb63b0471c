/**
 * What the dom0 image is made of, and the cache key that names it: a sha256 over the package list, the
 * suite and mirror, the build and init scripts' bytes, and the versions apt offers for the hypervisor
 * and the kernel. Any change to one of them builds a new image; an unchanged lab reuses the old one.
 */
import { createHash } from 'node:crypto';

/** The dom0's packages (xen-lab.md): Xen and its tools, the device model and firmware, a kernel, sshd. */
export const LAB_PACKAGES = [
  'xen-hypervisor-4.17-amd64',
  'xen-utils-4.17',
  'xenstore-utils',
  'qemu-system-xen',
  'seabios',
  'ipxe-qemu',
  'busybox-static',
  'kmod',
  'iproute2',
  'procps',
  'util-linux',
  'openssh-server',
  'openssh-client',
  'linux-image-amd64',
] as const;

/** The packages whose version goes into the key (what apt resolves them to changes the image most). */
export const VERSIONED_PACKAGES = ['xen-hypervisor-4.17-amd64', 'linux-image-amd64'] as const;

export const LAB_SUITE = 'bookworm';

/** Bump when the image layout changes in a way the inputs below do not show. */
const FORMAT = 1;

export interface ImageInputs {
  suite: string;
  mirror: string;
  packages: readonly string[];
  /** Script name → its bytes (build-image.sh, customize.sh, dom0-init.sh, initramfs-init.sh). */
  scripts: Readonly<Record<string, string>>;
  /** Package → the version apt offers, or 'unknown'. */
  versions: Readonly<Record<string, string>>;
}

/** sha256 hex of the inputs in a canonical order (package and script order do not matter). */
export function imageKey(inputs: ImageInputs): string {
  const h = createHash('sha256');
  const field = (name: string, value: string) => h.update(`${name}\0${value.length}\0${value}\0`);
  field('format', String(FORMAT));
  field('suite', inputs.suite);
  field('mirror', inputs.mirror);
  for (const p of [...new Set(inputs.packages)].sort()) field('package', p);
  for (const name of Object.keys(inputs.scripts).sort()) field(`script:${name}`, inputs.scripts[name]!);
  for (const name of Object.keys(inputs.versions).sort()) field(`version:${name}`, inputs.versions[name]!);
  return h.digest('hex');
}

/**
 * The candidate versions in `apt-cache policy P1 P2 ...` output: a package line ("name:"), then
 * "  Candidate: VERSION". Anything else is ignored; a package with no candidate (or "(none)") is absent.
 */
export function parseAptPolicy(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let current: string | undefined;
  for (const line of text.split('\n').slice(0, 10_000)) {
    const pkg = /^([a-z0-9][a-z0-9+.-]*)(?::[a-z0-9]+)?:\s*$/.exec(line);
    if (pkg) {
      current = pkg[1];
      continue;
    }
    const cand = /^\s+Candidate:\s*(\S+)\s*$/.exec(line);
    if (cand && current !== undefined && cand[1] !== '(none)' && cand[1]!.length <= 200) out[current] = cand[1]!;
  }
  return out;
}
