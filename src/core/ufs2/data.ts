/**
 * Data placement: streams an inode's bytes into blocks as they arrive (file data in arrival order,
 * directory and slow-symlink blocks at finish), with indirect blocks kept open while they fill.
 */
import { InputError } from '../errors.js';
import { UFS_NDADDR } from './geometry.js';
import type { BlockMap, WriterState } from './state.js';
import type { Lane } from './types.js';

interface OpenIndirect {
  key: string;
  addr: number;
  buf: Buffer;
}

/**
 * Streams `size` bytes into blocks of `map`; all-zero whole blocks become holes when allowed. When
 * the lane runs out of room it keeps consuming (counting, not writing) and sets `full` or
 * `laneOverflow`, so finish() can say how much room was needed.
 */
export async function writeData(
  s: WriterState,
  label: string,
  map: BlockMap,
  size: number,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  allowHoles: boolean,
  lane: Lane = 0,
): Promise<void> {
  const { g, alloc } = s;
  const { bsize, fsize, frag, nindir } = g;
  const out = lane === 1 ? s.laneTarget : s.target;
  const outOfRoom = (): void => {
    if (lane === 1) s.laneOverflow = true;
    else s.full = true;
  };
  const nblocks = Math.ceil(size / bsize);
  const open: Array<OpenIndirect | null> = [null, null, null];
  let blockBuf: Buffer | null = null;
  let fill = 0;
  let lbn = 0;
  let received = 0;

  const flushOpen = async (from: number): Promise<void> => {
    for (let d = 2; d >= from; d--) {
      const o = open[d];
      if (o && o.addr > 0 && !s.full && !s.laneOverflow) await out.write(o.buf, o.addr * fsize);
      open[d] = null;
    }
  };

  /** Makes sure the indirect blocks above `lbn` exist; returns the block and slot holding its pointer. */
  const indirectSlot = async (n: number): Promise<{ buf: Buffer; slot: number } | null> => {
    let i = n - UFS_NDADDR;
    let level = 0;
    let span = nindir;
    while (i >= span) {
      i -= span;
      level++;
      span *= nindir;
    }
    const idx: number[] = [];
    let rem = i;
    for (let d = level; d >= 0; d--) {
      const unit = nindir ** d;
      idx.push(Math.floor(rem / unit));
      rem %= unit;
    }
    for (let d = 0; d <= level; d++) {
      const key = `${level}:${idx.slice(0, d).join(',')}`;
      let o = open[d];
      if (!o || o.key !== key) {
        await flushOpen(d);
        o = open[d] = { key, addr: 0, buf: Buffer.alloc(bsize) };
      }
      if (o.addr === 0) {
        const a = alloc.block(lane);
        if (a < 0) return null;
        o.addr = a;
        map.frags += frag;
        if (d === 0) map.ib[level] = a;
        else open[d - 1]!.buf.writeBigInt64LE(BigInt(a), idx[d - 1]! * 8);
      }
    }
    return { buf: open[level]!.buf, slot: idx[level]! };
  };

  const emit = async (buf: Buffer, len: number): Promise<void> => {
    const n = lbn++;
    const isLast = n === nblocks - 1;
    if (!isLast && allowHoles && buf.equals(s.zeroBlock)) return;
    if (s.full || s.laneOverflow) return;
    const nfr = n < UFS_NDADDR && isLast ? Math.ceil(len / fsize) : frag;
    let slot: { buf: Buffer; slot: number } | null = null;
    if (n >= UFS_NDADDR) {
      slot = await indirectSlot(n);
      if (slot === null) {
        outOfRoom();
        return;
      }
    }
    const addr = nfr === frag ? alloc.block(lane) : alloc.frags(nfr, lane);
    if (addr < 0) {
      outOfRoom();
      return;
    }
    map.frags += nfr;
    if (slot) slot.buf.writeBigInt64LE(BigInt(addr), slot.slot * 8);
    else map.db[n] = addr;
    await out.write(nfr === frag && buf.length === bsize ? buf : buf.subarray(0, nfr * fsize), addr * fsize);
  };

  for await (const chunk of data) {
    if (received + chunk.length > size)
      throw new InputError(`${label}: more data than the ${size} bytes announced`, {
        hint: 'the archive member is longer than its header says; the archive is corrupt',
      });
    received += chunk.length;
    let pos = 0;
    while (pos < chunk.length) {
      if (fill === 0 && chunk.length - pos >= bsize) {
        // A whole block straight from the chunk: no copy.
        await emit(Buffer.from(chunk.buffer, chunk.byteOffset + pos, bsize), bsize);
        pos += bsize;
        continue;
      }
      blockBuf ??= Buffer.alloc(bsize);
      const take = Math.min(bsize - fill, chunk.length - pos);
      blockBuf.set(chunk.subarray(pos, pos + take), fill);
      fill += take;
      pos += take;
      if (fill === bsize) {
        await emit(blockBuf, bsize);
        fill = 0;
      }
    }
  }
  if (received !== size)
    throw new InputError(`${label}: ${received} bytes of data, but ${size} announced`, {
      hint: 'the archive ended early or the member is truncated; fetch the distribution set again',
    });
  if (fill > 0) {
    blockBuf!.fill(0, fill);
    await emit(blockBuf!, fill);
  }
  await flushOpen(0);
}
