/**
 * What the UFS2 writer accepts: paths, names, symlink targets, metadata and the build timestamp.
 * UFS names are byte strings. With `nameEncoding: 'bytes'` a path is a byte string held in a JS
 * string, one character per byte (0-255), as the tar reader gives it; with 'utf8' (the default)
 * it is text, written as its UTF-8 bytes.
 */
import { InputError } from '../errors.js';
import type { FsMeta, Ufs2Options } from './types.js';

const MAX_NAME = 255;
const MAX_SYMLINK = 1023;

export type NameEncoding = NonNullable<Ufs2Options['nameEncoding']>;

/** A name's bytes as they go on disk; a 'bytes' string with a character above 0xFF is refused, not truncated. */
export function nameBytes(text: string, encoding: NameEncoding, what: string): Buffer {
  if (encoding === 'bytes') {
    // eslint-disable-next-line no-control-regex
    if (/[^\u0000-\u00ff]/.test(text)) throw new InputError(`${what} ${JSON.stringify(text)} is not a byte string (a character above 0xFF)`, { hint: 'give names as bytes, one character per byte' });
    return Buffer.from(text, 'latin1');
  }
  return Buffer.from(text, 'utf8');
}

export function splitPath(path: string, encoding: NameEncoding): string[] {
  if (typeof path !== 'string') throw new InputError(`invalid path ${String(path)}`);
  if (path === '') return [];
  const parts = path.split('/');
  for (const p of parts) {
    if (p === '' || p === '.' || p === '..' || p.includes('\0'))
      throw new InputError(`invalid path ${JSON.stringify(path)}: empty, '.', '..' or NUL component`, {
        hint: 'paths must be normalised and relative (the tar reader does this)',
      });
    if (nameBytes(p, encoding, 'the name').length > MAX_NAME)
      throw new InputError(`name too long in ${JSON.stringify(path)}: more than ${MAX_NAME} bytes`, {
        hint: 'UFS names are at most 255 bytes',
      });
  }
  return parts;
}

export function symlinkBytes(path: string, target: string, encoding: NameEncoding): Buffer {
  const bytes = nameBytes(target, encoding, 'the symlink target');
  if (bytes.length === 0 || bytes.length > MAX_SYMLINK || bytes.includes(0))
    throw new InputError(`symlink ${JSON.stringify(path)} has an invalid target (empty, NUL or over ${MAX_SYMLINK} bytes)`);
  return bytes;
}

export function checkMeta(path: string, meta: FsMeta): void {
  const u32 = (n: number): boolean => Number.isInteger(n) && n >= 0 && n <= 0xffffffff;
  const ok = Number.isInteger(meta.mode) && meta.mode >= 0 && meta.mode <= 0o7777 && u32(meta.uid) && u32(meta.gid) && Number.isFinite(meta.mtime) && u32(meta.flags);
  if (!ok)
    throw new InputError(`invalid metadata for ${JSON.stringify(path || '/')}`, {
      hint: 'mode must be within 0o7777, uid/gid/flags unsigned 32-bit integers, mtime a number',
    });
}

export function checkTimestamp(t: number): number {
  if (!Number.isInteger(t) || t < 0) throw new InputError(`invalid build timestamp ${t}`, { hint: 'give whole seconds since the epoch' });
  return t;
}
