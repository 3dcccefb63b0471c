/**
 * The kernel `fbxen build` kept beside an image for PVH (build.json's `pvhKernel`, build/pvh-kernel.ts),
 * found and checked for `fbxen boot --type pvh` without --kernel: the file build.json names, in the same
 * directory, with the size and sha256 build.json recorded, and still a kernel that can boot PVH.
 * build.json is input like any other: a name that leaves the directory, a record of the wrong shape, or a
 * file over the size limit is refused, naming the problem.
 */
import { constants } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { InputError } from '../errors.js';
import { sha256File } from '../util/sha256.js';
import { assertPvhKernel, inspectKernel, MAX_KERNEL_BYTES, type KernelFacts } from './inspect.js';

/** build.json is a few KiB; more than this is not fbxen's. */
const MAX_BUILD_JSON = 1024 * 1024;

const PvhKernelField = z.union([
  z.object({ file: z.string().min(1).max(255), size: z.number().int().nonnegative(), sha256: z.string().regex(/^[0-9a-f]{64}$/) }),
  z.object({ file: z.null(), unavailable: z.string().max(2000) }),
]);
const BuildJson = z.looseObject({ pvhKernel: PvhKernelField.optional() });

export interface ImageKernel {
  path: string;
  sha256: string;
  facts: KernelFacts;
}

const OTHER_WAYS = 'give the kernel with --kernel FILE, or boot with --type hvm';

async function readBuildJson(path: string): Promise<string | undefined> {
  // O_NONBLOCK: a FIFO named build.json would otherwise hold the open until a writer comes.
  const fh = await open(path, constants.O_RDONLY | constants.O_NONBLOCK).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw new InputError(`cannot read ${path} (${err.code ?? err.message})`, { hint: OTHER_WAYS });
  });
  if (!fh) return undefined;
  try {
    if (!(await fh.stat()).isFile()) throw new InputError(`${path} is not a regular file`, { hint: OTHER_WAYS });
    const buf = Buffer.alloc(MAX_BUILD_JSON + 1);
    let got = 0;
    while (got < buf.length) {
      const { bytesRead } = await fh.read(buf, got, buf.length - got, got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got > MAX_BUILD_JSON) throw new InputError(`${path} is larger than ${MAX_BUILD_JSON} bytes: not a build.json fbxen wrote`, { hint: OTHER_WAYS });
    return buf.toString('utf8', 0, got);
  } finally {
    await fh.close();
  }
}

/** The image's own kernel for a PVH boot, checked; throws InputError saying why there is none. */
export async function imageKernel(imagePath: string): Promise<ImageKernel> {
  const dir = dirname(imagePath);
  const buildJson = join(dir, 'build.json');
  const text = await readBuildJson(buildJson);
  if (text === undefined) {
    throw new InputError(`there is no build.json beside ${imagePath}: fbxen cannot tell which kernel the image holds`, { hint: `${OTHER_WAYS} (fbxen build writes the kernel beside the images it makes)` });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new InputError(`${buildJson} is not JSON`, { hint: OTHER_WAYS });
  }
  const parsed = BuildJson.safeParse(json);
  if (!parsed.success) throw new InputError(`${buildJson}: pvhKernel is not what fbxen build writes (${parsed.error.issues[0]?.message ?? 'bad shape'})`, { hint: OTHER_WAYS });
  const record = parsed.data.pvhKernel;
  if (!record) throw new InputError(`${buildJson} has no pvhKernel: the image was built before fbxen kept kernels for PVH`, { hint: `build it again, or ${OTHER_WAYS}` });
  if (record.file === null) throw new InputError(`the image's kernel cannot boot PVH: ${record.unavailable}`, { hint: OTHER_WAYS });
  // Only a file in the same directory: a hostile build.json must not point fbxen at /etc/shadow.
  if (basename(record.file) !== record.file || record.file === '.' || record.file === '..') {
    throw new InputError(`${buildJson}: pvhKernel.file ${JSON.stringify(record.file.slice(0, 80))} is not a file name in the image's directory`, { hint: OTHER_WAYS });
  }
  const path = join(dir, record.file);
  const st = await stat(path).catch((err: NodeJS.ErrnoException) => {
    throw new InputError(`the kernel build.json names, ${path}, cannot be read (${err.code ?? err.message})`, { hint: `build the image again, or ${OTHER_WAYS}` });
  });
  if (!st.isFile()) throw new InputError(`${path} is not a regular file`, { hint: OTHER_WAYS });
  if (st.size !== record.size || st.size > MAX_KERNEL_BYTES) {
    throw new InputError(`${path} is ${st.size} bytes, but build.json recorded ${record.size}: it changed after the build`, { hint: `build the image again, or ${OTHER_WAYS}` });
  }
  const sha256 = await sha256File(path);
  if (sha256 !== record.sha256) throw new InputError(`${path} has sha256 ${sha256}, but build.json recorded ${record.sha256}: it changed after the build`, { hint: `build the image again, or ${OTHER_WAYS}` });
  const facts = await inspectKernel(path);
  assertPvhKernel(facts);
  return { path, sha256, facts };
}

/** One line for plans and reports: what the kernel is and why it can boot PVH. */
export function describeKernel(k: KernelFacts): string {
  const parts = [
    k.arch,
    `ident ${k.ident ?? 'unknown (no kern_conf)'}`,
    k.freebsdVersion !== undefined ? `__FreeBSD_version ${k.freebsdVersion}` : undefined,
    k.pvhEntry !== undefined ? `PVH entry 0x${k.pvhEntry.toString(16)}` : 'no PVH entry',
    k.kernConf ? `options XENHVM ${k.kernConf.xenhvm ? 'yes' : 'no'}` : undefined,
  ].filter(Boolean);
  return `${k.path} (${parts.join(', ')})`;
}
