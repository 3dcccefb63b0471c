/**
 * A streaming tar reader (ustar, pax 'x'/'g' headers, GNU long names, GNU sparse files in pax form) for
 * FreeBSD's distribution sets. File data is handed on as views of the incoming chunks, never buffered
 * whole, so memory stays bounded whatever the size of the set. Headers are checksummed; a damaged or
 * truncated stream is an InputError.
 *
 * Names are bytes: FreeBSD file names are byte strings, so names, link targets and pax values are
 * given as byte strings (one character per byte, 0-255, Node's 'latin1'), never decoded as text. A pax
 * `path` is UTF-8 by the standard (or raw with `hdrcharset=BINARY`): its bytes are kept either way.
 */
import { InputError } from '../errors.js';
import { expandSparse, sparseInfo } from './tar-sparse.js';

export type TarType = 'file' | 'hardlink' | 'symlink' | 'chardev' | 'blockdev' | 'directory' | 'fifo' | 'other';

export interface TarHeader {
  /** The name as stored (pax `path` wins over ustar name/prefix), not yet normalised; a byte string. */
  name: string;
  type: TarType;
  /** The raw type flag character, for error messages. */
  typeflag: string;
  mode: number;
  uid: number;
  gid: number;
  /** The file's size (a GNU sparse file's real size, holes included). */
  size: number;
  /** Seconds; pax mtime may carry a fraction. */
  mtime: number;
  mtimeNsec: number;
  /** A byte string, as `name`. */
  linkname: string;
  uname: string;
  gname: string;
  /** pax SCHILY.fflags (e.g. "schg"), or '' */
  fflags: string;
  /** Offset of this entry's header in the stream, for error messages. */
  offset: number;
}

export interface TarEntry {
  header: TarHeader;
  /** The entry's data; must be consumed (or is skipped) before the next entry is read. */
  data: AsyncIterable<Uint8Array>;
}

const BLOCK = 512;

/** Pulls bytes from an async chunk source: exact reads for headers, views for data. */
class ChunkReader {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private done = false;
  offset = 0;

  constructor(private readonly source: AsyncIterator<Uint8Array>) {}

  private async fill(): Promise<boolean> {
    while (this.pos >= this.chunk.length) {
      if (this.done) return false;
      const next = await this.source.next();
      if (next.done) {
        this.done = true;
        return false;
      }
      this.chunk = next.value;
      this.pos = 0;
    }
    return true;
  }

  /** Reads exactly n bytes, or returns the bytes read before the end of the stream. */
  async readExact(n: number): Promise<Uint8Array> {
    if (!(await this.fill())) return new Uint8Array(0);
    if (this.chunk.length - this.pos >= n) {
      const view = this.chunk.subarray(this.pos, this.pos + n);
      this.pos += n;
      this.offset += n;
      return view;
    }
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n && (await this.fill())) {
      const take = Math.min(n - got, this.chunk.length - this.pos);
      out.set(this.chunk.subarray(this.pos, this.pos + take), got);
      this.pos += take;
      got += take;
      this.offset += take;
    }
    return got === n ? out : out.subarray(0, got);
  }

  /** The next view of at most `max` bytes, or an empty view at the end of the stream. */
  async view(max: number): Promise<Uint8Array> {
    if (!(await this.fill())) return new Uint8Array(0);
    const take = Math.min(max, this.chunk.length - this.pos);
    const view = this.chunk.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.offset += take;
    return view;
  }

  async skip(n: number, onShort: () => never): Promise<void> {
    let left = n;
    while (left > 0) {
      const v = await this.view(left);
      if (v.length === 0) onShort();
      left -= v.length;
    }
  }
}

/** One entry's data: iterable once; whatever the consumer leaves unread is drained before the next header. */
class EntryData implements AsyncIterable<Uint8Array> {
  private started = false;
  constructor(
    private readonly reader: ChunkReader,
    private remaining: number,
    private readonly onShort: () => never,
  ) {}

  async *[Symbol.asyncIterator](): AsyncGenerator<Uint8Array> {
    if (this.started) throw new Error('tar entry data can be read only once');
    this.started = true;
    while (this.remaining > 0) {
      const v = await this.reader.view(this.remaining);
      if (v.length === 0) this.onShort();
      this.remaining -= v.length;
      yield v;
    }
  }

  async drain(): Promise<void> {
    this.started = true;
    await this.reader.skip(this.remaining, this.onShort);
    this.remaining = 0;
  }
}

/** Bytes to a byte string (one character per byte): nothing is replaced, every name round-trips. */
const bytes = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1');

function cstring(buf: Uint8Array, start: number, len: number): string {
  const field = buf.subarray(start, start + len);
  const nul = field.indexOf(0);
  return bytes(nul >= 0 ? field.subarray(0, nul) : field);
}

/** Octal (NUL/space padded) or base-256 (high bit set) numeric field; NaN when malformed. */
function numeric(buf: Uint8Array, start: number, len: number): number {
  if ((buf[start]! & 0x80) !== 0) {
    if ((buf[start]! & 0x40) !== 0) return NaN; // negative base-256: never valid here
    let v = buf[start]! & 0x3f;
    for (let i = 1; i < len; i++) v = v * 256 + buf[start + i]!;
    return Number.isSafeInteger(v) ? v : NaN;
  }
  const text = cstring(buf, start, len).trim();
  if (text === '') return 0;
  return /^[0-7]+$/.test(text) ? parseInt(text, 8) : NaN;
}

function checksumOk(block: Uint8Array): boolean {
  const stored = numeric(block, 148, 8);
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

const TYPES: Record<string, TarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '3': 'chardev',
  '4': 'blockdev',
  '5': 'directory',
  '6': 'fifo',
};

/** Parses pax extended header records: "<len> <key>=<value>\n" (values as byte strings). */
export function parsePaxRecords(data: Uint8Array, where: string): Map<string, string> {
  return new Map(paxRecordList(data, where));
}

/** The records in order, repeated keys included (GNU sparse 0.0 repeats its offset/numbytes pairs). */
function paxRecordList(data: Uint8Array, where: string): [string, string][] {
  const out: [string, string][] = [];
  let pos = 0;
  while (pos < data.length) {
    if (data[pos] === 0) break; // NUL padding after the last record
    let sp = pos;
    while (sp < data.length && data[sp] !== 0x20) sp++;
    const len = Number(bytes(data.subarray(pos, sp)));
    if (!Number.isInteger(len) || len <= sp - pos + 1 || pos + len > data.length || data[pos + len - 1] !== 0x0a) {
      throw new InputError(`malformed pax extended header ${where}`, { hint: 'the set is damaged; fetch it again' });
    }
    const record = data.subarray(sp + 1, pos + len - 1);
    const eq = record.indexOf(0x3d);
    if (eq < 0) throw new InputError(`malformed pax record (no '=') ${where}`, { hint: 'the set is damaged; fetch it again' });
    out.push([bytes(record.subarray(0, eq)), bytes(record.subarray(eq + 1))]);
    pos += len;
  }
  return out;
}

/** Reads all of an entry's data into memory (only for small metadata payloads: pax and GNU long names). */
async function collect(reader: ChunkReader, size: number, onShort: () => never): Promise<Uint8Array> {
  const data = await reader.readExact(size);
  if (data.length < size) onShort();
  return data.slice();
}

const MAX_META = 1 << 20; // pax/GNU metadata entries larger than this are refused as hostile

/**
 * Yields the entries of a tar stream. `label` names the stream in errors ("base.txz").
 * The consumer must finish (or abandon) an entry's data before asking for the next entry.
 */
export async function* readTar(source: AsyncIterable<Uint8Array>, label: string): AsyncGenerator<TarEntry> {
  const reader = new ChunkReader(source[Symbol.asyncIterator]());
  const global = new Map<string, string>();
  let local = new Map<string, string>();
  let localList: [string, string][] = [];
  let gnuLongName: string | undefined;
  let gnuLongLink: string | undefined;
  let sawEnd = false;

  const truncated = (what: string) => (): never => {
    throw new InputError(`${label}: the tar stream ends in the middle of ${what}`, {
      hint: 'the set is truncated or damaged; fetch it again (its sha256 should be checked against MANIFEST)',
    });
  };

  while (true) {
    const at = reader.offset;
    const block = await reader.readExact(BLOCK);
    if (block.length === 0) break;
    if (block.length < BLOCK) truncated('a header')();
    if (isZeroBlock(block)) {
      sawEnd = true;
      break;
    }
    if (!checksumOk(block)) {
      throw new InputError(`${label}: bad tar header checksum at byte ${at}`, {
        hint: 'the set is corrupt (or not a tar archive); fetch it again',
      });
    }
    const typeflag = String.fromCharCode(block[156]!);
    const size = numeric(block, 124, 12);
    if (!Number.isFinite(size) || size < 0) {
      throw new InputError(`${label}: unreadable size field in the tar header at byte ${at}`, { hint: 'the set is corrupt; fetch it again' });
    }
    const padded = Math.ceil(size / BLOCK) * BLOCK;
    const rawName = cstring(block, 0, 100);

    if (typeflag === 'x' || typeflag === 'g' || typeflag === 'L' || typeflag === 'K') {
      if (size > MAX_META) throw new InputError(`${label}: a ${size}-byte tar metadata entry at byte ${at} is larger than any real one`, { hint: 'the archive is damaged or hostile' });
      const data = await collect(reader, size, truncated('an extended header'));
      await reader.skip(padded - size, truncated('an extended header'));
      if (typeflag === 'x') {
        localList = paxRecordList(data, `at byte ${at} of ${label}`);
        local = new Map(localList);
      } else if (typeflag === 'g') for (const [k, v] of parsePaxRecords(data, `at byte ${at} of ${label}`)) global.set(k, v);
      else {
        const text = bytes(data);
        const value = text.includes('\0') ? text.slice(0, text.indexOf('\0')) : text;
        if (typeflag === 'L') gnuLongName = value;
        else gnuLongLink = value;
      }
      continue;
    }

    const pax = new Map([...global, ...local]);
    const magic = cstring(block, 257, 6);
    const prefix = magic === 'ustar' ? cstring(block, 345, 155) : '';
    const ustarName = prefix ? `${prefix}/${rawName}` : rawName;
    const storedName = pax.get('path') ?? gnuLongName ?? ustarName;
    const where = `${label}: entry ${showName(storedName)}`;
    // A pax number that is not one (uid=-1, 1e3, an overflow) is refused, never replaced by the ustar field.
    const paxNumber = (key: string, fallback: number, max = Number.MAX_SAFE_INTEGER) => {
      const v = pax.get(key);
      if (v === undefined) return fallback;
      if (!/^\d{1,16}$/.test(v) || Number(v) > max) {
        throw new InputError(`${where}: pax ${key}=${JSON.stringify(v)} is not a number fbxen can store (a decimal from 0 to ${max})`, { hint: 'the archive is damaged or hostile' });
      }
      return Number(v);
    };
    const mtimeText = pax.get('mtime');
    let mtime = numeric(block, 136, 12);
    let mtimeNsec = 0;
    if (mtimeText !== undefined) {
      const m = /^(-?\d{1,16})(?:\.(\d{1,9})\d*)?$/.exec(mtimeText);
      if (!m) throw new InputError(`${where}: pax mtime=${JSON.stringify(mtimeText)} is not a time`, { hint: 'the archive is damaged or hostile' });
      mtime = Number(m[1]);
      mtimeNsec = m[2] ? Number(m[2].padEnd(9, '0')) : 0;
    }
    const storedSize = paxNumber('size', size);
    const sparse = sparseInfo(pax, localList, where);
    const header: TarHeader = {
      name: sparse?.name ?? storedName,
      type: TYPES[typeflag] ?? 'other',
      typeflag,
      mode: numeric(block, 100, 8) & 0o7777,
      // UFS stores 32-bit owners.
      uid: paxNumber('uid', numeric(block, 108, 8), 0xffffffff),
      gid: paxNumber('gid', numeric(block, 116, 8), 0xffffffff),
      size: sparse ? sparse.realSize : storedSize,
      mtime,
      mtimeNsec,
      linkname: pax.get('linkpath') ?? gnuLongLink ?? cstring(block, 157, 100),
      uname: pax.get('uname') ?? cstring(block, 265, 32),
      gname: pax.get('gname') ?? cstring(block, 297, 32),
      fflags: pax.get('SCHILY.fflags') ?? '',
      offset: at,
    };
    local = new Map();
    localList = [];
    gnuLongName = undefined;
    gnuLongLink = undefined;
    for (const [field, value] of [['uid', header.uid], ['gid', header.gid], ['mtime', header.mtime]] as const) {
      if (!Number.isFinite(value)) {
        throw new InputError(`${label}: unreadable ${field} in the tar header of ${showName(header.name)}`, { hint: 'the set is corrupt; fetch it again' });
      }
    }
    if (sparse && header.type !== 'file') throw new InputError(`${where}: GNU sparse keys on an entry of type '${typeflag}'`, { hint: 'the archive is damaged or hostile' });
    // Hard links, symlinks and directories carry no data even when a size is recorded.
    const dataSize = header.type === 'file' || header.type === 'other' ? storedSize : 0;
    const dataPadded = header.type === 'file' || header.type === 'other' ? Math.ceil(storedSize / BLOCK) * BLOCK : padded;
    const data = new EntryData(reader, dataSize, truncated(`the data of ${showName(header.name)}`));
    yield { header, data: sparse ? expandSparse(data, storedSize, sparse, where) : data };
    await data.drain();
    await reader.skip(dataPadded - dataSize, truncated(`the padding of ${showName(header.name)}`));
  }
  if (!sawEnd) {
    throw new InputError(`${label}: the tar stream ends without its end-of-archive marker`, {
      hint: 'the set is truncated; fetch it again',
    });
  }
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** A byte-string name for messages: quoted UTF-8 when it is UTF-8, with \\xNN for the bytes that are not. */
export function showName(name: string): string {
  const raw = Buffer.from(name, 'latin1');
  try {
    return JSON.stringify(strictUtf8.decode(raw));
  } catch {
    return JSON.stringify(name.replace(/[\x80-\xff]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)).replace(/\\\\x/g, '\\x');
  }
}
