/**
 * What fbxen needs to know about an image before booting it: that it is readable, its format (from the
 * bytes, never from the file name alone) and, when `fbxen build` left a build.json beside it, the release
 * and arch. A file that is no disk image (an XVA for xl, a text file, a compressed download, an ISO) or
 * whose name says another format than its bytes is refused with what it is and what to do instead.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, dirname, extname, join, resolve } from 'node:path';
import { z } from 'zod';
import { EnvironmentError, InputError } from '../errors.js';

export type ImageFormat = 'raw' | 'qcow2' | 'vhd' | 'xva';

export interface ImageInfo {
  path: string;
  format: ImageFormat;
  size: number;
  /** The disk's size as the guest sees it (qcow2 header, VHD footer; the file size for raw and XVA). */
  virtualSize?: number | undefined;
  /** What the bytes showed: "GPT", "MBR", "dynamic", "fixed", "version 3"... */
  detail?: string | undefined;
  /** From build.json when present. */
  build?: { name?: string | undefined; release?: string | undefined; arch?: string | undefined } | undefined;
}

const BuildJson = z.looseObject({
  name: z.string().optional(),
  release: z.string().optional(),
  arch: z.string().optional(),
});

/** What detectImage reads: the first HEAD_BYTES (the ISO 9660 descriptor sits at 32769) and the last 512. */
export const HEAD_BYTES = 34_816;
const SECTOR = 512;

const QCOW_MAGIC = Buffer.from([0x51, 0x46, 0x49, 0xfb]); // "QFI\xfb"
const VHD_COOKIE = Buffer.from('conectix');
const GPT_SIGNATURE = Buffer.from('EFI PART');

/** Files that are not disk images, each with what to do instead. */
const NOT_IMAGES: { what: string; test: (head: Buffer) => boolean; hint: string }[] = [
  { what: 'xz-compressed', test: (h) => h.subarray(0, 6).equals(Buffer.from([0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])), hint: 'decompress it first (xz -dk FILE): FreeBSD ships its VM images as .raw.xz / .qcow2.xz / .vhd.xz' },
  { what: 'gzip-compressed', test: (h) => h[0] === 0x1f && h[1] === 0x8b, hint: 'decompress it first (gunzip -k FILE)' },
  { what: 'zstd-compressed', test: (h) => h.subarray(0, 4).equals(Buffer.from([0x28, 0xb5, 0x2f, 0xfd])), hint: 'decompress it first (zstd -d FILE)' },
  { what: 'bzip2-compressed', test: (h) => h.toString('latin1', 0, 3) === 'BZh', hint: 'decompress it first (bunzip2 -k FILE)' },
];

export type Detected = { format: ImageFormat; detail: string; virtualSize: number } | { format: 'none'; what: string; hint: string };

/**
 * Tells the format by content: qcow2 magic; a VHD footer "conectix" in the last 512 bytes (fixed, and
 * the copy of a dynamic one) or its copy in the first 512 (dynamic); an XVA (tar, ova.xml first); a raw
 * disk with a boot signature 55 AA at byte 510 (GPT when "EFI PART" is at LBA 1, else MBR). Anything
 * else is named for what it is. `head` is up to HEAD_BYTES from offset 0, `tail` the last 512 bytes.
 */
export function detectImage(head: Buffer, tail: Buffer, size: number): Detected {
  const none = (what: string, hint: string): Detected => ({ format: 'none', what, hint });
  const usual = 'pass the .raw or .qcow2 (xl), or the .vhd or .xva (XenServer), that `fbxen build` writes';
  if (size === 0) return none('an empty file', usual);
  if (head.subarray(0, 4).equals(QCOW_MAGIC)) {
    const version = head.length >= 8 ? head.readUInt32BE(4) : 0;
    const virtual = head.length >= 32 ? Number(head.readBigUInt64BE(24)) : 0;
    return { format: 'qcow2', detail: `version ${version}`, virtualSize: virtual };
  }
  const footer = tail.length >= SECTOR && tail.subarray(0, 8).equals(VHD_COOKIE) ? tail : head.length >= SECTOR && head.subarray(0, 8).equals(VHD_COOKIE) ? head.subarray(0, SECTOR) : undefined;
  if (footer) {
    // Disk type at offset 60: 2 fixed, 3 dynamic, 4 differencing; current size at 48.
    const type = footer.readUInt32BE(60);
    return { format: 'vhd', detail: type === 2 ? 'fixed' : type === 3 ? 'dynamic' : type === 4 ? 'differencing' : `type ${type}`, virtualSize: Number(footer.readBigUInt64BE(48)) };
  }
  if (head.length >= SECTOR && head.toString('latin1', 257, 262) === 'ustar') {
    const first = head.toString('latin1', 0, 100).replace(/\0.*$/s, '');
    if (first === 'ova.xml') return { format: 'xva', detail: 'ova.xml first', virtualSize: size };
    return none(`a tar archive (first member ${JSON.stringify(first.slice(0, 60))}), not an XVA (whose first member is ova.xml)`, usual);
  }
  for (const n of NOT_IMAGES) if (n.test(head)) return none(`${n.what}, not a disk image`, n.hint);
  if (head.length >= 32774 && head.toString('latin1', 32769, 32774) === 'CD001') {
    return none('an ISO 9660 CD image, not a disk', 'a CD goes in the CD drive: pass it with --iso, and the disk image with --image');
  }
  if (looksLikeText(head.subarray(0, Math.min(head.length, 4096)))) return none('a text file, not a disk image', usual);
  if (head.length < SECTOR || head[510] !== 0x55 || head[511] !== 0xaa) {
    return none('no disk image fbxen knows: no qcow2 or VHD header, no XVA, and no boot signature (55 AA at byte 510) of a partitioned disk', `${usual}; a raw disk without a boot sector does not boot`);
  }
  if (size % SECTOR !== 0) return none(`a raw disk of ${size} bytes, which is not a whole number of 512-byte sectors (cut short?)`, 'build or download it again');
  const gpt = head.length >= SECTOR + 8 && head.subarray(SECTOR, SECTOR + 8).equals(GPT_SIGNATURE);
  return { format: 'raw', detail: gpt ? 'GPT' : 'MBR', virtualSize: size };
}

/** No NUL byte and (almost) only printable characters: a text file, not a disk or an archive. */
function looksLikeText(sample: Buffer): boolean {
  if (sample.length === 0) return false;
  let odd = 0;
  for (const b of sample) {
    if (b === 0) return false;
    if (b < 0x09 || (b > 0x0d && b < 0x20) || b === 0x7f) odd++;
  }
  return odd * 100 <= sample.length; // a stray control character in a text file is fine
}

/** The format a file name claims, or undefined when it claims none (or ".img", used for raw and qcow2 alike). */
export function formatFromName(path: string): { ext: string; format: ImageFormat | 'iso' | 'compressed' } | undefined {
  const ext = extname(path).toLowerCase();
  const map: Record<string, ImageFormat | 'iso' | 'compressed'> = { '.raw': 'raw', '.qcow2': 'qcow2', '.qcow': 'qcow2', '.vhd': 'vhd', '.xva': 'xva', '.iso': 'iso', '.xz': 'compressed', '.gz': 'compressed', '.zst': 'compressed', '.bz2': 'compressed' };
  const format = map[ext];
  return format ? { ext, format } : undefined;
}

const FORMAT_NAMES: Record<ImageFormat, string> = { raw: 'a raw disk', qcow2: 'a qcow2 image', vhd: 'a VHD', xva: 'an XVA (XenServer VM export)' };

export function describeImage(image: Pick<ImageInfo, 'format' | 'detail'>): string {
  return `${FORMAT_NAMES[image.format]}${image.detail && image.format !== 'xva' ? ` (${image.detail})` : ''}`;
}

export async function inspectImage(pathArg: string, cwd: string): Promise<ImageInfo> {
  const path = resolve(cwd, pathArg);
  let fh;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new InputError(`image ${path} does not exist`, { hint: 'build one with `fbxen build`, or pass the path of an existing image with --image' });
    }
    if (code === 'EISDIR') throw new InputError(`image ${path} is not a regular file`, { hint: 'pass the image file, not a directory or device' });
    throw new EnvironmentError(`image ${path} cannot be read: ${(err as Error).message}`, { hint: 'check the file permissions (xl runs as root and opens the image itself)' });
  }
  let detected: Detected;
  let size: number;
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new InputError(`image ${path} is not a regular file`, { hint: 'pass the image file, not a directory or device' });
    size = st.size;
    const head = Buffer.alloc(Math.min(size, HEAD_BYTES));
    const tail = Buffer.alloc(size >= SECTOR ? SECTOR : 0);
    await readFully(fh, head, 0);
    if (tail.length) await readFully(fh, tail, size - SECTOR);
    detected = detectImage(head, tail, size);
  } finally {
    await fh.close();
  }
  const named = formatFromName(path);
  if (detected.format === 'none') {
    const claim = named && named.format !== 'compressed' && named.format !== 'iso' ? ` (named ${named.ext})` : '';
    throw new InputError(`image ${path} is ${detected.what}${claim}`, { hint: detected.hint });
  }
  if (named && named.format !== detected.format) {
    throw new InputError(`image ${path} is named ${named.ext} but holds ${describeImage(detected)}`, {
      hint: `rename it to .${detected.format} if the bytes are what you meant, or pass the file you meant; fbxen goes by the content and refuses a name that says otherwise`,
    });
  }
  return { path, format: detected.format, detail: detected.detail, virtualSize: detected.virtualSize, size, build: await readBuildJson(path) };
}

async function readFully(fh: import('node:fs/promises').FileHandle, buf: Buffer, position: number): Promise<void> {
  let done = 0;
  while (done < buf.length) {
    const { bytesRead } = await fh.read(buf, done, buf.length - done, position + done);
    if (bytesRead === 0) throw new InputError(`the image shrank while fbxen read it`, { hint: 'wait until whatever writes it has finished' });
    done += bytesRead;
  }
}

/**
 * Refuses an image the toolstack cannot use, with what to do instead. xl boots raw and qcow2 (qdisk);
 * XenServer imports raw and VHD disks (PUT /import_raw_vdi) and XVA exports (PUT /import).
 */
export function requireImageFor(toolstack: 'xl' | 'xapi', image: ImageInfo): void {
  if (toolstack === 'xl') {
    if (image.format === 'vhd') {
      throw new InputError(`image ${image.path} is a VHD; xl boots raw and qcow2 images`, {
        hint: 'use the .raw or .qcow2 output of `fbxen build`, or convert: qemu-img convert -O qcow2 IMAGE.vhd IMAGE.qcow2 (VHD is for XenServer: --toolstack xapi)',
      });
    }
    if (image.format === 'xva') {
      throw new InputError(`image ${image.path} is an XVA (a XenServer VM export), not a disk xl can boot`, {
        hint: 'boot it on XenServer/XCP-ng with --toolstack xapi (or import it there: xe vm-import filename=FILE); for xl, use the .raw or .qcow2 of the same build',
      });
    }
    return;
  }
  if (image.format === 'qcow2') {
    throw new InputError(`image ${image.path} is qcow2, which XenServer does not import`, { hint: 'build it with `fbxen build --format vhd` or `--format xva`, or use --toolstack xl' });
  }
  if (image.format === 'vhd' && image.detail === 'differencing') {
    throw new InputError(`image ${image.path} is a differencing VHD, which needs its parent`, { hint: 'pass a fixed or dynamic VHD (the one `fbxen build --format vhd` writes)' });
  }
}

async function readBuildJson(imagePath: string): Promise<ImageInfo['build']> {
  let text: string;
  try {
    // Bounded: a FIFO (O_NONBLOCK, then not a file) or a huge file named build.json is no build record.
    const fh = await open(join(dirname(imagePath), 'build.json'), constants.O_RDONLY | constants.O_NONBLOCK);
    try {
      const st = await fh.stat();
      if (!st.isFile() || st.size > 1024 * 1024) return undefined;
      text = await fh.readFile('utf8');
    } finally {
      await fh.close();
    }
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

/** `fbxen-<image base name>` without its format extension, characters xl cannot take replaced, for when --name is not given. */
export function defaultDomainName(image: Partial<ImageInfo> & Pick<ImageInfo, 'path'>): string {
  const base = image.build?.name ?? basename(image.path).replace(/\.(raw|img|qcow2|qcow|vhd|xva)$/i, '');
  const cleaned = base.replace(/[^A-Za-z0-9._-]+/g, '-').replace(/-{2,}/g, '-').replace(/^[-._]+|[-._]+$/g, '');
  const name = cleaned.startsWith('fbxen-') ? cleaned : `fbxen-${cleaned || 'guest'}`;
  return name.slice(0, 64).replace(/[-._]+$/, '');
}
