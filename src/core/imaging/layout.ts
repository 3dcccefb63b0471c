/**
 * The disk layout, as FreeBSD's own images have it: freebsd-boot (gptboot) at LBA 40, then 1 MiB-aligned
 * partitions: an optional ESP, swap, and the UFS root last so that growfs can take the rest of the disk.
 */
import { InputError } from '../errors.js';
import { formatBytes } from '../progress.js';
import { guidFromSeed, lastUsableLba, PartitionType, SECTOR, type GptPartition } from './gpt.js';

const MiB = 1024 * 1024;
const ALIGN = MiB / SECTOR;
/** Disk sizes are whole 2 MiB: XenServer's storage rounds VDIs up to that, which would move the backup GPT. */
const DISK_GRAIN = 2 * MiB;
export const DEFAULT_DISK_SIZE = 6 * 1024 * MiB;
const BOOT_FIRST_LBA = 40;
const BOOT_SECTORS = 1024; // 512 KiB: pmbr loads at most 545 KiB of gptboot
const ESP_BYTES = 32 * MiB;

export interface Extent {
  firstLba: number;
  lastLba: number;
  bytes: number;
}

export interface DiskLayout {
  diskSize: number;
  fsSize: number;
  diskGuid: string;
  boot: Extent;
  esp: Extent | undefined;
  swap: Extent | undefined;
  rootfs: Extent;
  partitions: GptPartition[];
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;
const extent = (firstLba: number, sectors: number): Extent => ({ firstLba, lastLba: firstLba + sectors - 1, bytes: sectors * SECTOR });

export interface LayoutRequest {
  /** What the content needs (the UFS2 writer's estimate). */
  contentFsSize: number;
  fsSize?: number | undefined;
  diskSize?: number | undefined;
  swapSize: number;
  uefi: boolean;
  seed: string;
}

export function planLayout(req: LayoutRequest): DiskLayout {
  const fsSize = req.fsSize ?? roundUp(req.contentFsSize * 1.1 + 32 * MiB, MiB);
  if (req.fsSize !== undefined && req.fsSize < req.contentFsSize) {
    throw new InputError(`--size ${formatBytes(req.fsSize)} is too small for the sets: the root file system needs at least ${formatBytes(roundUp(req.contentFsSize, MiB))}`, {
      hint: `use --size ${Math.ceil(req.contentFsSize / MiB)}M or more, or leave --size out to size it to the content`,
    });
  }
  const swapSectors = roundUp(req.swapSize, MiB) / SECTOR;
  let lba = ALIGN;
  const esp = req.uefi ? extent(lba, ESP_BYTES / SECTOR) : undefined;
  if (esp) lba += ESP_BYTES / SECTOR;
  const swap = swapSectors > 0 ? extent(lba, swapSectors) : undefined;
  lba += swapSectors;
  const rootFirst = lba;
  const backup = 33;
  const needed = roundUp((rootFirst + fsSize / SECTOR + backup) * SECTOR, DISK_GRAIN);
  let diskSize = roundUp(req.diskSize ?? DEFAULT_DISK_SIZE, DISK_GRAIN);
  if (diskSize < needed) {
    if (req.diskSize !== undefined) {
      throw new InputError(`--disk-size ${formatBytes(req.diskSize)} is too small: the partitions need ${formatBytes(needed)}`, {
        hint: `use --disk-size ${Math.ceil(needed / MiB)}M or more (or a smaller --swap)`,
      });
    }
    diskSize = needed;
  }
  const rootLast = lastUsableLba(diskSize / SECTOR);
  const rootfs: Extent = { firstLba: rootFirst, lastLba: rootLast, bytes: (rootLast - rootFirst + 1) * SECTOR };
  const boot = extent(BOOT_FIRST_LBA, BOOT_SECTORS);
  const part = (label: string, type: string, e: Extent): GptPartition => ({ label, type, guid: guidFromSeed(`${req.seed}/part/${label}`), firstLba: e.firstLba, lastLba: e.lastLba });
  const partitions = [part('gptboot0', PartitionType.freebsdBoot, boot)];
  if (esp) partitions.push(part('efiboot0', PartitionType.efi, esp));
  if (swap) partitions.push(part('swapfs', PartitionType.freebsdSwap, swap));
  partitions.push(part('rootfs', PartitionType.freebsdUfs, rootfs));
  return { diskSize, fsSize: Math.min(fsSize, rootfs.bytes), diskGuid: guidFromSeed(`${req.seed}/disk`), boot, esp, swap, rootfs, partitions };
}
