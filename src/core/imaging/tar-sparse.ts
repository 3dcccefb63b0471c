/**
 * GNU tar's sparse files in pax archives (`tar --sparse --format=posix`), formats 0.0, 0.1 and 1.0
 * (GNU tar manual, "Storing Sparse Files"). The archive stores only the data segments; the real file
 * is zeros elsewhere. An entry of this kind is handed on under its real name and size, with its data
 * expanded: the UFS2 writer turns the all-zero blocks into holes, so holes stay holes.
 *
 * - 0.0: pax `GNU.sparse.size` (real size), `GNU.sparse.numblocks`, then `GNU.sparse.offset` /
 *   `GNU.sparse.numbytes` repeated once per segment; the entry's own name is the real one.
 * - 0.1: `GNU.sparse.size`, `GNU.sparse.numblocks`, `GNU.sparse.name`, `GNU.sparse.map` (offset,size,...).
 * - 1.0: `GNU.sparse.major=1`, `GNU.sparse.minor=0`, `GNU.sparse.name`, `GNU.sparse.realsize`; the map
 *   opens the data: decimal numbers one a line (segment count, then offset and size per segment),
 *   padded with NULs to a 512-byte boundary.
 * Anything else (another major version, GNU's old type 'S' header) is refused by name.
 */
import { InputError } from '../errors.js';

export interface SparseSegment {
  offset: number;
  size: number;
}

export interface SparseInfo {
  /** The real name when the format carries one (GNU.sparse.name). */
  name: string | undefined;
  realSize: number;
  /** 0.x: the map from the pax keys; 1.0: undefined (read from the data). */
  map: SparseSegment[] | undefined;
  version: '0.0' | '0.1' | '1.0';
}

/**
 * Larger real sizes are refused: the holes of a sparse file are expanded to zeros for the writer, so
 * its real size bounds the work. No FreeBSD set holds a sparse file; 64 GiB is ten times fbxen's
 * default disk.
 */
export const MAX_SPARSE_REAL_SIZE = 64 * 1024 ** 3;
/** The 1.0 map is read into memory: at most this many bytes of it (as the other metadata entries). */
export const MAX_SPARSE_MAP_BYTES = 1 << 20;

const ZEROS = new Uint8Array(1 << 20);

function refuse(where: string, why: string): never {
  throw new InputError(`${where}: GNU sparse file: ${why}`, { hint: 'the archive is damaged or hostile; official FreeBSD sets hold no sparse files' });
}

function decimal(text: string | undefined, where: string, what: string): number {
  if (text === undefined || !/^\d{1,16}$/.test(text) || !Number.isSafeInteger(Number(text))) refuse(where, `${what} is not a decimal number (${JSON.stringify(text)})`);
  return Number(text);
}

/** Whether the pax records describe a GNU sparse file, and how; undefined for an ordinary entry. */
export function sparseInfo(pax: ReadonlyMap<string, string>, pairs: readonly [string, string][], where: string): SparseInfo | undefined {
  const keys = [...pax.keys()].filter((k) => k.startsWith('GNU.sparse.'));
  if (keys.length === 0) return undefined;
  const major = pax.get('GNU.sparse.major');
  const minor = pax.get('GNU.sparse.minor');
  let info: SparseInfo;
  if (major !== undefined || minor !== undefined) {
    if (major !== '1' || minor !== '0') refuse(where, `format ${major ?? '?'}.${minor ?? '?'} is not supported (fbxen reads 0.0, 0.1 and 1.0)`);
    info = { name: pax.get('GNU.sparse.name'), realSize: decimal(pax.get('GNU.sparse.realsize'), where, 'GNU.sparse.realsize'), map: undefined, version: '1.0' };
  } else if (pax.has('GNU.sparse.map')) {
    const text = pax.get('GNU.sparse.map')!;
    const fields = text === '' ? [] : text.split(','); // an empty map: a file that is all hole
    if (fields.length % 2 !== 0) refuse(where, 'GNU.sparse.map has an odd number of fields');
    const map: SparseSegment[] = [];
    for (let i = 0; i < fields.length; i += 2) map.push({ offset: decimal(fields[i], where, 'a map offset'), size: decimal(fields[i + 1], where, 'a map size') });
    info = { name: pax.get('GNU.sparse.name'), realSize: decimal(pax.get('GNU.sparse.size'), where, 'GNU.sparse.size'), map, version: '0.1' };
    if (pax.has('GNU.sparse.numblocks') && decimal(pax.get('GNU.sparse.numblocks'), where, 'GNU.sparse.numblocks') !== map.length) refuse(where, 'GNU.sparse.numblocks does not match the map');
  } else if (pax.has('GNU.sparse.offset') || pax.has('GNU.sparse.numbytes') || (pax.has('GNU.sparse.size') && pax.has('GNU.sparse.numblocks'))) {
    // 0.0 repeats the two keys once per segment, in order: the Map keeps only the last, so use the list.
    const map: SparseSegment[] = [];
    let offset: number | undefined;
    for (const [k, v] of pairs) {
      if (k === 'GNU.sparse.offset') {
        if (offset !== undefined) refuse(where, 'GNU.sparse.offset without its GNU.sparse.numbytes');
        offset = decimal(v, where, 'GNU.sparse.offset');
      } else if (k === 'GNU.sparse.numbytes') {
        if (offset === undefined) refuse(where, 'GNU.sparse.numbytes without its GNU.sparse.offset');
        map.push({ offset, size: decimal(v, where, 'GNU.sparse.numbytes') });
        offset = undefined;
      }
    }
    if (offset !== undefined) refuse(where, 'GNU.sparse.offset without its GNU.sparse.numbytes');
    info = { name: pax.get('GNU.sparse.name'), realSize: decimal(pax.get('GNU.sparse.size'), where, 'GNU.sparse.size'), map, version: '0.0' };
    if (pax.has('GNU.sparse.numblocks') && decimal(pax.get('GNU.sparse.numblocks'), where, 'GNU.sparse.numblocks') !== map.length) refuse(where, 'GNU.sparse.numblocks does not match the map');
  } else {
    refuse(where, `unknown layout (keys ${keys.join(', ')})`);
  }
  if (info.realSize > MAX_SPARSE_REAL_SIZE) refuse(where, `a real size of ${info.realSize} bytes is over fbxen's limit of ${MAX_SPARSE_REAL_SIZE}`);
  if (info.map) checkMap(info.map, info.realSize, where);
  return info;
}

/** Segments in ascending order, not overlapping, inside the real size. */
function checkMap(map: readonly SparseSegment[], realSize: number, where: string): void {
  let end = 0;
  for (const s of map) {
    if (s.offset < end) refuse(where, `the map's segments overlap or are out of order (offset ${s.offset} before ${end})`);
    end = s.offset + s.size;
    if (end > realSize) refuse(where, `a segment ends at ${end}, past the real size ${realSize}`);
  }
}

/** Pulls exact byte counts out of a chunk stream (the stored data), keeping what is left of a chunk. */
class Pull {
  private chunk: Uint8Array = new Uint8Array(0);
  private pos = 0;
  private readonly it: AsyncIterator<Uint8Array>;
  consumed = 0;
  constructor(source: AsyncIterable<Uint8Array>) {
    this.it = source[Symbol.asyncIterator]();
  }
  /** The next view of at most `max` bytes; empty at the end of the stored data. */
  async next(max: number): Promise<Uint8Array> {
    while (this.pos >= this.chunk.length) {
      const r = await this.it.next();
      if (r.done) return new Uint8Array(0);
      this.chunk = r.value;
      this.pos = 0;
    }
    const take = Math.min(max, this.chunk.length - this.pos);
    const view = this.chunk.subarray(this.pos, this.pos + take);
    this.pos += take;
    this.consumed += take;
    return view;
  }
}

/** The 1.0 map at the head of the stored data: numbers one a line, the whole padded to 512 bytes. */
async function readMap(pull: Pull, storedSize: number, realSize: number, where: string): Promise<SparseSegment[]> {
  let text = '';
  const numbers: number[] = [];
  let count: number | undefined;
  while (count === undefined || numbers.length < 1 + 2 * count) {
    if (pull.consumed >= Math.min(storedSize, MAX_SPARSE_MAP_BYTES)) refuse(where, `the map is longer than the data or than ${MAX_SPARSE_MAP_BYTES} bytes`);
    const block = await pull.next(512 - (pull.consumed % 512));
    if (block.length === 0) refuse(where, 'the data ends inside the map');
    text += Buffer.from(block).toString('latin1');
    let nl: number;
    while ((nl = text.indexOf('\n')) >= 0 && (count === undefined || numbers.length < 1 + 2 * count)) {
      numbers.push(decimal(text.slice(0, nl), where, 'a map line'));
      text = text.slice(nl + 1);
      if (numbers.length === 1) count = numbers[0]!;
    }
  }
  // The rest of the map's last 512-byte block is padding.
  while (pull.consumed % 512 !== 0) if ((await pull.next(512 - (pull.consumed % 512))).length === 0) refuse(where, 'the data ends inside the map');
  const map: SparseSegment[] = [];
  for (let i = 0; i < count; i++) map.push({ offset: numbers[1 + 2 * i]!, size: numbers[2 + 2 * i]! });
  checkMap(map, realSize, where);
  return map;
}

/**
 * The real file's bytes from the stored data: zeros for the holes, the stored segments in between.
 * The stored data must hold exactly the map (1.0) and the segments, nothing more or less.
 */
export async function* expandSparse(stored: AsyncIterable<Uint8Array>, storedSize: number, info: SparseInfo, where: string): AsyncGenerator<Uint8Array> {
  const pull = new Pull(stored);
  const map = info.map ?? (await readMap(pull, storedSize, info.realSize, where));
  const headBytes = pull.consumed;
  const dataBytes = map.reduce((n, s) => n + s.size, 0);
  if (headBytes + dataBytes !== storedSize) refuse(where, `the map describes ${dataBytes} bytes of data, the entry stores ${storedSize - headBytes}`);
  let pos = 0;
  const zeros = function* (n: number): Generator<Uint8Array> {
    for (let left = n; left > 0; left -= ZEROS.length) yield ZEROS.subarray(0, Math.min(left, ZEROS.length));
  };
  for (const s of map) {
    yield* zeros(s.offset - pos);
    for (let left = s.size; left > 0; ) {
      const v = await pull.next(left);
      if (v.length === 0) refuse(where, 'the data ends inside a segment');
      left -= v.length;
      yield v;
    }
    pos = s.offset + s.size;
  }
  yield* zeros(info.realSize - pos);
}
