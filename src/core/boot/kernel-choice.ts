/**
 * The kernel of a PVH boot (docs/pvh.md §6-7): `--kernel FILE`, or the kernel `fbxen build` kept beside the
 * image (build.json's pvhKernel). Either is checked (amd64, the PVH entry note, options XENHVM) before
 * anything runs, copied into the run directory (`run/kernel`, so a later build cannot change what a kept
 * domain or a re-run boots, and a remote host gets it through the driver's stage step), and described in
 * the plan and in run.json. The kernel environment is the cmdline: fbxen's root file system, then the
 * user's --kernel-env entries; nothing of fbxen's loader.conf applies under PVH.
 */
import { copyFile, chmod, rename, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { InputError } from '../errors.js';
import { describeKernel, imageKernel } from '../kernel/image-kernel.js';
import { assertPvhKernel, inspectKernel, kernelRecord, MAX_KERNEL_BYTES, type KernelFacts } from '../kernel/inspect.js';
import { encodePvhCmdline, parseKernelEnvArg, pvhKernelEnv } from '../toolstack/xl/xl-config.js';
import { sha256File } from '../util/sha256.js';

/** The name of the copy in the run directory. */
export const RUN_KERNEL_FILE = 'kernel';

/**
 * fbxen's loader.conf (build) holds only these, and each means nothing to a kernel no loader started: the
 * console is the Xen PV console xc0 whatever they say (docs/pvh.md §2), autoboot_delay is the loader's own.
 */
export const LOADER_CONF_LEFT_OUT = ['boot_multicons', 'boot_serial', 'console', 'comconsole_speed', 'autoboot_delay'] as const;

export interface KernelChoice {
  /** where the kernel came from: --kernel, or the build's copy named in build.json */
  source: 'option' | 'image';
  /** the file that was checked */
  from: string;
  sha256: string;
  facts: KernelFacts;
  /** the copy the guest boots: <run dir>/kernel */
  runPath: string;
  /** the kernel environment, in order */
  kernelEnv: [string, string][];
  /** kernelEnv as the PVH cmdline */
  cmdline: string;
}

/** Checks and describes the kernel of a PVH boot; nothing is written. */
export async function chooseKernel(req: { kernel?: string | undefined; kernelEnv?: readonly string[] | undefined }, imagePath: string, runDir: string, cwd: string): Promise<KernelChoice> {
  // The kernel environment first: a typo there is cheaper to report than a kernel read.
  const kernelEnv = pvhKernelEnv((req.kernelEnv ?? []).map(parseKernelEnvArg));
  const cmdline = encodePvhCmdline(kernelEnv);
  const runPath = join(runDir, RUN_KERNEL_FILE);
  if (req.kernel !== undefined) {
    const from = resolve(cwd, req.kernel);
    const facts = await inspectKernel(from);
    assertPvhKernel(facts);
    return { source: 'option', from, sha256: await sha256File(from), facts, runPath, kernelEnv, cmdline };
  }
  const k = await imageKernel(imagePath);
  return { source: 'image', from: k.path, sha256: k.sha256, facts: k.facts, runPath, kernelEnv, cmdline };
}

/**
 * Copies the checked kernel to run/kernel (read-only), through a temporary name: the copy's sha256 must be
 * the one checked, or the file changed in between and nothing is left behind.
 */
export async function copyKernelIntoRun(k: KernelChoice): Promise<void> {
  const tmp = `${k.runPath}.tmp${process.pid}`;
  try {
    await copyFile(k.from, tmp);
    const st = await stat(tmp);
    const sha = st.size <= MAX_KERNEL_BYTES ? await sha256File(tmp) : '';
    if (sha !== k.sha256) {
      throw new InputError(`the kernel ${k.from} changed while fbxen copied it (sha256 ${k.sha256} when checked)`, { hint: 'boot again once the kernel file is no longer being written' });
    }
    await chmod(tmp, 0o444);
    await rename(tmp, k.runPath);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** What --dry-run says about the kernel, before the steps. */
export function kernelPlanLines(k: KernelChoice): string[] {
  return [
    `kernel     ${describeKernel(k.facts)}`,
    `           sha256 ${k.sha256}; from ${k.source === 'option' ? '--kernel' : "build.json's pvhKernel (the image's own kernel)"}; copied to ${k.runPath}`,
    `cmdline    ${k.cmdline}   (the kernel environment: no loader runs under PVH)`,
    `           left out of the image's loader.conf: ${LOADER_CONF_LEFT_OUT.join(', ')} (the console is the Xen PV console xc0; autoboot_delay is the loader's)`,
  ];
}

/** What run.json keeps about the kernel of a PVH boot. */
export function kernelRunRecord(k: KernelChoice): Record<string, unknown> {
  return { ...kernelRecord(k.facts), path: k.runPath, from: k.from, source: k.source === 'option' ? '--kernel' : 'build.json pvhKernel', sha256: k.sha256, cmdline: k.cmdline };
}
