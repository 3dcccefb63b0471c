/**
 * The EFI system partition for --uefi: a FAT16 file system made by mkfs.fat and mtools (unprivileged,
 * reproducible with --invariant, a fixed volume id and SOURCE_DATE_EPOCH), holding loader.efi as the
 * removable-media boot path, then copied into its partition.
 */
import { createHash } from 'node:crypto';
import { mkdir, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Runner } from '../exec/runner.js';
import type { Arch } from './sets.js';
import type { Extent } from './layout.js';

export async function writeEspImage(fh: FileHandle, esp: Extent, loaderEfi: Buffer, arch: Arch, timestamp: number, runner: Runner, scratchDir: string): Promise<void> {
  await mkdir(scratchDir, { recursive: true });
  const img = join(scratchDir, 'esp.fat');
  const efi = join(scratchDir, 'loader.efi');
  await writeFile(efi, loaderEfi);
  await rm(img, { force: true });
  const volumeId = createHash('sha256').update(loaderEfi).digest('hex').slice(0, 8);
  const env = { SOURCE_DATE_EPOCH: String(timestamp), MTOOLS_SKIP_CHECK: '1' };
  await runner.run('mkfs.fat', ['-F', '16', '-n', 'EFISYS', '-i', volumeId, '--invariant', '-C', img, String(esp.bytes / 1024)], { env });
  await runner.run('mmd', ['-i', img, '::/EFI', '::/EFI/BOOT'], { env });
  const bootName = arch === 'i386' ? 'BOOTIA32.EFI' : 'BOOTX64.EFI';
  await runner.run('mcopy', ['-m', '-i', img, efi, `::/EFI/BOOT/${bootName}`], { env });
  const data = await readFile(img);
  await fh.write(data, 0, data.length, esp.firstLba * 512);
  await rm(img, { force: true });
  await rm(efi, { force: true });
}
