/**
 * What the sets must be before and after the file system is written: a supported release (named, or
 * read from bin/freebsd-version), and a kernel with Xen PVHVM support for the --arch asked.
 */
import { InputError } from '../errors.js';
import type { BuildRequest } from './build-types.js';
import { readKernelConfig, type KernelConfig } from './kernel-config.js';
import { checkSupported, parseRelease, type Arch } from './sets.js';

export function checkRelease(name: string, arch: Arch): void {
  checkSupported(parseRelease(name.replace(/-p\d+$/, '')), arch);
}

/**
 * The release of --dist sets: what bin/freebsd-version names, or --release-name when it names none
 * (a --release-name it contradicts is refused); checked against the support matrix.
 */
export function releaseOf(script: Buffer | undefined, releaseName: string | undefined, arch: Arch): string {
  const found = releaseFromFreebsdVersion(script);
  if (releaseName) {
    if (found && found.replace(/-p\d+$/, '') !== releaseName.replace(/-p\d+$/, '')) {
      throw new InputError(`--release-name ${releaseName}, but the sets' bin/freebsd-version says ${found}`, { hint: `drop --release-name (the sets name themselves), or give --release-name ${found}` });
    }
    return releaseName;
  }
  if (!found) {
    throw new InputError(`cannot tell the release of these sets: ${script ? "base.txz's bin/freebsd-version has no USERLAND_VERSION" : 'base.txz has no bin/freebsd-version'}`, {
      hint: 'name them with --release-name, e.g. --release-name 14.3-RELEASE (nothing was written)',
    });
  }
  if (!/^\d+\.\d+-[A-Z0-9-]+$/.test(found)) {
    throw new InputError(`base.txz's bin/freebsd-version names ${JSON.stringify(found.slice(0, 64))}, not a FreeBSD release`, { hint: 'name the sets with --release-name, e.g. --release-name 14.3-RELEASE (nothing was written)' });
  }
  checkRelease(found, arch);
  return found;
}

function releaseFromFreebsdVersion(script: Buffer | undefined): string | undefined {
  const m = script && /USERLAND_VERSION="([^"]+)"/.exec(script.toString('latin1'));
  return m?.[1];
}

export async function checkKernel(parts: Buffer[], req: BuildRequest): Promise<KernelConfig> {
  if (!parts.length) {
    throw new InputError('kernel.txz has no /boot/kernel/kernel', { hint: 'the kernel set is incomplete; fetch it again' });
  }
  const config = await readKernelConfig(Buffer.concat(parts));
  if (!(config.xenhvm && config.xenpci) && !req.allowNonXenKernel) {
    const missing = [!config.xenhvm && 'options XENHVM', !config.xenpci && 'device xenpci'].filter(Boolean).join(' and ');
    throw new InputError(`the kernel (ident ${config.ident ?? 'unknown'}) lacks ${missing}${config.source === 'strings' ? ' (it has no embedded config; judged from its strings)' : ''}: it would run on Xen without PV drivers, vector callback or PV timers`, {
      hint: 'use a GENERIC kernel (10.0 or later), or add both lines to your kernel config; --allow-non-xen-kernel builds anyway',
    });
  }
  return config;
}

export function checkArch(config: KernelConfig, arch: Arch): void {
  if (config.elfMachine !== 'other' && config.elfMachine !== arch) {
    throw new InputError(`the kernel is an ${config.elfMachine} kernel, but --arch is ${arch}`, { hint: `use --arch ${config.elfMachine}, or the ${arch} sets` });
  }
}
