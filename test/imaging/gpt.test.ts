import { execFileSync } from 'node:child_process';
import { closeSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { guidFromSeed, PartitionType, renderGpt, SECTOR, type GptLayout } from '../../src/core/imaging/gpt.js';
import { planLayout } from '../../src/core/imaging/layout.js';
import { tmpDir } from '../support/samples.js';

const MiB = 1024 * 1024;

function writeDisk(path: string, layout: GptLayout, pmbr: Buffer): void {
  execFileSync('truncate', ['-s', String(layout.totalSectors * SECTOR), path]);
  const { head, tail, tailLba } = renderGpt(layout, pmbr);
  const fd = openSync(path, 'r+');
  writeSync(fd, head, 0, head.length, 0);
  writeSync(fd, tail, 0, tail.length, tailLba * SECTOR);
  closeSync(fd);
}

const pmbr = Buffer.alloc(512, 0x90);
pmbr[510] = 0x55;
pmbr[511] = 0xaa;

const sampleLayout = () => {
  const l = planLayout({ contentFsSize: 40 * MiB, swapSize: 64 * MiB, uefi: true, diskSize: 256 * MiB, seed: 'test' });
  return { l, layout: { totalSectors: l.diskSize / SECTOR, diskGuid: l.diskGuid, partitions: l.partitions } };
};

describe('GPT writer', () => {
  it('is clean for sgdisk -v and shows the planned partitions', () => {
    const dir = tmpDir('gpt');
    const disk = join(dir, 'disk.raw');
    const { l, layout } = sampleLayout();
    writeDisk(disk, layout, pmbr);
    const verify = execFileSync('sgdisk', ['-v', disk]).toString();
    expect(verify).toContain('No problems found');
    const print = execFileSync('sgdisk', ['-p', disk]).toString();
    expect(print).toMatch(/^\s+1\s+40\s+1063\s+512\.0 KiB\s+A501\s+gptboot0$/m);
    expect(print).toMatch(/^\s+2\s+2048\s+67583\s+32\.0 MiB\s+EF00\s+efiboot0$/m);
    expect(print).toMatch(/^\s+3\s+67584\s+198655\s+64\.0 MiB\s+A502\s+swapfs$/m);
    expect(print).toMatch(new RegExp(`^\\s+4\\s+198656\\s+${l.diskSize / SECTOR - 34}\\s+.*A503\\s+rootfs$`, 'm'));
    expect(print).toContain(`Disk identifier (GUID): ${l.diskGuid}`);
    // sfdisk (util-linux) as a second reader
    const sf = JSON.parse(execFileSync('sfdisk', ['-J', disk]).toString()) as { partitiontable: { label: string; partitions: { start: number; size: number; type: string; name: string; uuid: string }[] } };
    expect(sf.partitiontable.label).toBe('gpt');
    expect(sf.partitiontable.partitions.map((p) => [p.name, p.start, p.type])).toEqual([
      ['gptboot0', 40, PartitionType.freebsdBoot],
      ['efiboot0', 2048, PartitionType.efi],
      ['swapfs', 67584, PartitionType.freebsdSwap],
      ['rootfs', 198656, PartitionType.freebsdUfs],
    ]);
    expect(sf.partitiontable.partitions[3]!.uuid).toBe(l.partitions[3]!.guid);
  });

  it('matches what sgdisk writes for the same table, byte for byte (beyond the boot code)', () => {
    const dir = tmpDir('gpt-sgdisk');
    const ours = join(dir, 'ours.raw');
    const theirs = join(dir, 'theirs.raw');
    const { layout } = sampleLayout();
    writeDisk(ours, layout, Buffer.alloc(512));
    execFileSync('truncate', ['-s', String(layout.totalSectors * SECTOR), theirs]);
    const args = ['-a', '1', '-U', layout.diskGuid];
    layout.partitions.forEach((p, i) => {
      const n = i + 1;
      args.push('-n', `${n}:${p.firstLba}:${p.lastLba}`, '-t', `${n}:${p.type}`, '-c', `${n}:${p.label}`, '-u', `${n}:${p.guid}`);
    });
    execFileSync('sgdisk', [...args, theirs]);
    const a = readFileSync(ours);
    const b = readFileSync(theirs);
    const lastLba = layout.totalSectors - 1;
    // LBA 0 (446.. the table), LBA 1..33, and the backup (last 33 sectors)
    expect(a.subarray(446, 512)).toEqual(b.subarray(446, 512));
    expect(a.subarray(SECTOR, 34 * SECTOR)).toEqual(b.subarray(SECTOR, 34 * SECTOR));
    expect(a.subarray((lastLba - 32) * SECTOR)).toEqual(b.subarray((lastLba - 32) * SECTOR));
  });

  it('keeps the pmbr boot code and the protective entry', () => {
    const dir = tmpDir('gpt-pmbr');
    const disk = join(dir, 'disk.raw');
    writeDisk(disk, sampleLayout().layout, pmbr);
    const s0 = readFileSync(disk).subarray(0, 512);
    expect(s0.subarray(0, 446)).toEqual(pmbr.subarray(0, 446));
    expect(s0[446 + 4]).toBe(0xee);
    expect(s0.subarray(510)).toEqual(Buffer.from([0x55, 0xaa]));
  });

  it('plans valid layouts for any sizes (sgdisk agrees)', () => {
    const dir = tmpDir('gpt-prop');
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3000 }), fc.integer({ min: 0, max: 2048 }), fc.boolean(), fc.option(fc.integer({ min: 64, max: 8192 })), (fsMiB, swapMiB, uefi, diskMiB) => {
        let l;
        try {
          l = planLayout({ contentFsSize: fsMiB * MiB, swapSize: swapMiB * MiB, uefi, diskSize: diskMiB === null ? undefined : diskMiB * MiB, seed: `p${fsMiB}` });
        } catch (err) {
          expect(diskMiB).not.toBeNull(); // only an explicit --disk-size may be too small
          expect(String(err)).toMatch(/too small/);
          return;
        }
        expect(l.rootfs.bytes).toBeGreaterThanOrEqual(l.fsSize);
        expect(l.rootfs.firstLba % 2048).toBe(0);
        expect(l.diskSize % (2 * MiB)).toBe(0);
        const disk = join(dir, 'p.raw');
        writeDisk(disk, { totalSectors: l.diskSize / SECTOR, diskGuid: l.diskGuid, partitions: l.partitions }, pmbr);
        expect(execFileSync('sgdisk', ['-v', disk]).toString()).toContain('No problems found');
        execFileSync('rm', ['-f', disk]);
      }),
      { numRuns: 12 },
    );
  });

  it('derives stable GUIDs from seeds', () => {
    expect(guidFromSeed('a')).toBe(guidFromSeed('a'));
    expect(guidFromSeed('a')).not.toBe(guidFromSeed('b'));
    expect(guidFromSeed('a')).toMatch(/^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$/);
  });
});
