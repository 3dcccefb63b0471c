/**
 * The output formats: a table each format slots into. raw is the image the build writes; the others
 * are made from it by fbxen's own writers, reproducibly.
 */
import type { ByteRanges } from '../util/ranges.js';

export interface FormatJob {
  rawPath: string;
  /** Where the raw image holds data: every byte outside these ranges is a hole. */
  written: ByteRanges;
  outPath: string;
  signal: AbortSignal;
  name: string;
  vcpus: number;
  memoryMiB: number;
  timestamp: number;
  seed: string;
}

export interface OutputFormat {
  extension: string;
  description: string;
  /** Writes job.outPath; a writer that hashed its output on the way returns the sha256. */
  produce(job: FormatJob): Promise<void | { sha256: string }>;
}

export const OUTPUT_FORMATS = {
  raw: {
    extension: 'raw',
    description: 'sparse raw disk image (xl: file or phy backends)',
    produce: async () => undefined,
  },
  qcow2: {
    extension: 'qcow2',
    description: 'qcow2 version 3 (xl with qemu-xen qdisk), written by fbxen (uncompressed, reproducible)',
    produce: async (job) => {
      const { writeQcow2 } = await import('../formats/qcow2.js');
      return writeQcow2(job.rawPath, job.outPath, { ranges: job.written, signal: job.signal });
    },
  },
  vhd: {
    extension: 'vhd',
    description: 'dynamic VHD for XenServer/XCP-ng, written by fbxen (exact size, reproducible)',
    produce: async (job) => {
      const { writeDynamicVhd } = await import('../formats/vhd.js');
      await writeDynamicVhd(job.rawPath, job.outPath, { timestamp: job.timestamp, seed: job.seed, ranges: job.written });
    },
  },
  xva: {
    extension: 'xva',
    description: 'XVA (XenServer VM export) with the disk, an empty CD drive and a VIF',
    produce: async (job) => {
      const { writeXva } = await import('../formats/xva.js');
      await writeXva(job.rawPath, job.outPath, { name: job.name, vcpus: job.vcpus, memoryMiB: job.memoryMiB, timestamp: job.timestamp, seed: job.seed, ranges: job.written });
    },
  },
} satisfies Record<string, OutputFormat>;

export type OutputFormatName = keyof typeof OUTPUT_FORMATS;
export const FORMAT_NAMES = Object.keys(OUTPUT_FORMATS) as OutputFormatName[];
