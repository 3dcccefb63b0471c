/**
 * The image's kernel, kept beside the image for PVH (issue 16): Xen's PVH loader takes the kernel from
 * the dom0 (xl's kernel=), never from the guest's disk, and reading UFS2 back out of an image a user may
 * have changed is neither simple nor safe. build has /boot/kernel/kernel in memory anyway (it checks its
 * kern_conf), so a kernel that can boot PVH is written as <name>.kernel and build.json says what it is;
 * one that cannot is not written and build.json says why (boot --type pvh repeats it).
 */
import { createHash } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { InputError } from '../errors.js';
import { inspectKernelBytes, kernelRecord, pvhRefusal } from '../kernel/inspect.js';
import { syncFile, temporarySibling } from '../util/atomic.js';

export type PvhKernelRecord =
  | {
      /** Beside build.json, so the output directory can move. */
      file: string;
      size: number;
      sha256: string;
      ident: string | undefined;
      freebsdVersion: number | undefined;
      pvhEntry: string;
      xenhvm: boolean | null;
      xenpci: boolean | null;
    }
  | { file: null; unavailable: string };

export const KERNEL_SUFFIX = '.kernel';

/**
 * Decides from the kernel's bytes; when it can boot PVH, writes them under a temporary name (added to
 * `pending`, which the build's cleanup removes) and returns the rename into place with the record.
 */
export async function stagePvhKernel(bytes: Buffer, outDir: string, name: string, pending: string[]): Promise<{ record: PvhKernelRecord; final?: [string, string] }> {
  let facts;
  try {
    facts = await inspectKernelBytes(bytes, '/boot/kernel/kernel');
  } catch (e) {
    // The build's own kernel check passed; a kernel the PVH reader cannot follow still makes an HVM image.
    if (e instanceof InputError) return { record: { file: null, unavailable: e.message } };
    throw e;
  }
  const why = pvhRefusal(facts);
  if (why) return { record: { file: null, unavailable: why } };
  const file = `${name}${KERNEL_SUFFIX}`;
  const final = join(outDir, file);
  const tmp = temporarySibling(final);
  pending.push(tmp);
  await writeFile(tmp, bytes, { mode: 0o444 });
  // On disk before it is renamed into place, as every other output (outputs-stage.ts).
  await syncFile(tmp);
  const r = kernelRecord(facts);
  return {
    record: {
      file,
      size: bytes.length,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      ident: facts.ident,
      freebsdVersion: facts.freebsdVersion,
      pvhEntry: r.pvhEntry as string,
      xenhvm: facts.kernConf?.xenhvm ?? null,
      xenpci: facts.kernConf?.xenpci ?? null,
    },
    final: [tmp, final],
  };
}
