/**
 * Which program decodes the .txz sets. FreeBSD's sets are single xz blocks, so neither decoder can
 * use a second core; 7-Zip's decoder is faster than xz's on them and writes 1 MiB at a time instead
 * of 8 KiB, which costs the reader less (figures in docs/performance.md). xz stays the fallback and
 * still reads the index (`xz --robot --list`) for the uncompressed size.
 */
import { onPath } from '../exec/runner.js';

export const XZ_DECODERS = ['auto', '7zz', 'xz'] as const;
export type XzDecoderChoice = (typeof XZ_DECODERS)[number];
export type XzDecoder = Exclude<XzDecoderChoice, 'auto'>;

/** auto: 7zz (Debian's 7zip package) when it is on PATH, else xz. */
export function resolveXzDecoder(choice: XzDecoderChoice, env: NodeJS.ProcessEnv): XzDecoder {
  if (choice !== 'auto') return choice;
  return onPath('7zz', env) ? '7zz' : 'xz';
}

/** The command that writes the decompressed tar of `path` to stdout. */
export function decodeCommand(decoder: XzDecoder, path: string): [string, string[]] {
  // -txz: only ever the xz format, whatever the file holds; -bso0 -bsp0: nothing but data on stdout.
  if (decoder === '7zz') return ['7zz', ['x', '-txz', '-so', '-bso0', '-bsp0', path]];
  return ['xz', ['-dc', '-T0', path]];
}

/** The decoder's complaint in a few words: 7zz says "ERROR: Data Error : base.tar", xz "xz: FILE: Compressed data is corrupt". */
export function decoderComplaint(decoder: XzDecoder, line: string): string {
  const m = decoder === '7zz' ? /^ERROR: (.+?)(?: : [^:]*)?$/.exec(line.trim()) : undefined;
  return m ? `7zz: ${m[1]}` : line.trim();
}
