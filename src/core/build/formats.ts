/**
 * The output formats: a table each format slots into. raw is the image the build writes; the others
 * are made from it (qcow2 with qemu-img; vhd and xva by fbxen's own writers, reproducibly).
 */
import type { Runner } from '../exec/runner.js';

export interface FormatJob {
  rawPath: string;
  outPath: string;
  runner: Runner;
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
  /** External tools the format needs (for preflight and build.json). */
  tools: string[];
  produce(job: FormatJob): Promise<void>;
}

export const OUTPUT_FORMATS = {
  raw: {
    extension: 'raw',
    description: 'sparse raw disk image (xl: file or phy backends)',
    tools: [],
    produce: async () => undefined,
  },
  qcow2: {
    extension: 'qcow2',
    description: 'qcow2 (xl with qemu-xen qdisk); made by qemu-img, uncompressed and reproducible',
    tools: ['qemu-img'],
    produce: async (job) => {
      await job.runner.run('qemu-img', ['convert', '-q', '-f', 'raw', '-O', 'qcow2', job.rawPath, job.outPath], { signal: job.signal });
    },
  },
  vhd: {
    extension: 'vhd',
    description: 'dynamic VHD for XenServer/XCP-ng, written by fbxen (exact size, reproducible)',
    tools: [],
    produce: async (job) => {
      const { writeDynamicVhd } = await import('../formats/vhd.js');
      await writeDynamicVhd(job.rawPath, job.outPath, { timestamp: job.timestamp, seed: job.seed });
    },
  },
  xva: {
    extension: 'xva',
    description: 'XVA (XenServer VM export) with the disk, an empty CD drive and a VIF',
    tools: [],
    produce: async (job) => {
      const { writeXva } = await import('../formats/xva.js');
      await writeXva(job.rawPath, job.outPath, { name: job.name, vcpus: job.vcpus, memoryMiB: job.memoryMiB, timestamp: job.timestamp, seed: job.seed });
    },
  },
} satisfies Record<string, OutputFormat>;

export type OutputFormatName = keyof typeof OUTPUT_FORMATS;
export const FORMAT_NAMES = Object.keys(OUTPUT_FORMATS) as OutputFormatName[];
