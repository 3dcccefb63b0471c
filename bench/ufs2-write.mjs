#!/usr/bin/env node
// Writes decompressed tar sets into a UFS2 file system with fbxen's tar reader and UFS2 writer, alone
// (no xz, no GPT, no formats): the file-system stage's own throughput. Prints one JSON line.
// usage: node bench/ufs2-write.mjs OUT.img SET.tar [SET.tar ...]
import { createReadStream } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import { readTar } from '../dist/core/imaging/tar.js';
import { EntryGuard } from '../dist/core/imaging/entries.js';
import { createFileBlockTarget, createUfs2Writer, estimateUfs2Size } from '../dist/core/ufs2/index.js';

const [out, ...tars] = process.argv.slice(2);
if (!out || tars.length === 0) {
  console.error('usage: node bench/ufs2-write.mjs OUT.img SET.tar [SET.tar ...]');
  process.exit(2);
}
let tarBytes = 0;
for (const t of tars) tarBytes += (await stat(t)).size;
const size = Math.ceil((estimateUfs2Size({ dataBytes: tarBytes, entries: 40000 }) * 1.1) / 1048576) * 1048576;
const t0 = process.hrtime.bigint();
const fh = await open(out, 'w+');
await fh.truncate(size);
const target = createFileBlockTarget(fh, 0);
const writer = createUfs2Writer(target, { sizeBytes: size, seed: 'bench', timestamp: 1717200000, volumeLabel: 'rootfs' });
const guard = new EntryGuard(writer);
for (const t of tars) {
  const chunks = (async function* () {
    for await (const c of createReadStream(t, { highWaterMark: 1 << 20 })) yield c;
  })();
  for await (const e of readTar(chunks, t)) await guard.add(e, t);
}
const stats = await writer.finish();
await target.flush();
await fh.close();
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
console.log(JSON.stringify({ seconds, tarBytes, fileBytes: guard.fileBytes, entries: guard.entries, fsBytes: stats.sizeBytes, maxRssMB: process.resourceUsage().maxRSS / 1024 }));
