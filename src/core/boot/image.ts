/**
 * What fbxen needs to know about an image before booting it: that it is readable, its format (from the
 * bytes, not the file name) and, when `fbxen build` left a build.json beside it, the release and arch.
 */
import { open, readFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { EnvironmentError, InputError } from '../errors.js';

export type ImageFormat = 'raw' | 'qcow2' | 'vhd';

export interface ImageInfo {
  path: string;
  format: ImageFormat;
  size: number;
  /** From build.json when present. */
  build?: { name?: string | undefined; release?: string | undefined; arch?: string | undefined } | undefined;
}

const BuildJson = z.looseObject({
  name: z.string().optional(),
  release: z.string().optional(),
  arch: z.string().optional(),
});

const QCOW_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"
const VHD_COOKIE = Buffer.from('conectix');

/** Detects the image format from its first and last bytes. */
export function detectFormat(head: Buffer, tail: Buffer): ImageFormat {
  if (head.subarray(0, 4).equals(QCOW_MAGIC)) return 'qcow2';
  // A VHD (fixed or dynamic) ends with a 512-byte footer starting "conectix"; dynamic ones also start with it.
  if (head.subarray(0, 8).equals(VHD_COOKIE) || tail.subarray(0, 8).equals(VHD_COOKIE)) return 'vhd';
  return 'raw';
}

export async function inspectImage(pathArg: string, cwd: string): Promise<ImageInfo> {
  const path = resolve(cwd, pathArg);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new InputError(`image ${path} does not exist`, { hint: 'build one with `fbxen build`, or pass the path of an existing .raw or .qcow2 image with --image' });
    }
    throw new EnvironmentError(`image ${path} cannot be read: ${(err as Error).message}`, { hint: 'check the file permissions (xl runs as root and opens the image itself)' });
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InputError(`image ${path} is not a regular file`, { hint: 'pass the image file, not a directory or device' });
    const head = Buffer.alloc(8);
    const tail = Buffer.alloc(8);
    await fh.read(head, 0, 8, 0);
    if (st.size >= 512) await fh.read(tail, 0, 8, st.size - 512);
    const format = detectFormat(head, tail);
    return { path, format, size: st.size, build: await readBuildJson(path) };
  } finally {
    await fh.close();
  }
}

async function readBuildJson(imagePath: string): Promise<ImageInfo['build']> {
  let text: string;
  try {
    text = await readFile(join(dirname(imagePath), 'build.json'), 'utf8');
  } catch {
    return undefined; // optional: images not made by fbxen build have none
  }
  try {
    const parsed = BuildJson.safeParse(JSON.parse(text));
    return parsed.success ? { name: parsed.data.name, release: parsed.data.release, arch: parsed.data.arch } : undefined;
  } catch {
    return undefined;
  }
}

/** `fbxen-<image base name>` with characters xl cannot take replaced, for when --name is not given. */
export function defaultDomainName(image: ImageInfo): string {
  const base = image.build?.name ?? basename(image.path).replace(/\.(raw|img|qcow2)$/i, '');
  const cleaned = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/-{2,}/g, '-').replace(/^[-._]+|[-._]+$/g, '');
  const name = cleaned.startsWith('fbxen-') ? cleaned : `fbxen-${cleaned || 'guest'}`;
  return name.slice(0, 64).replace(/[-._]+$/, '');
}
