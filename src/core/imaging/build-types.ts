/** What a build is asked for, what it is given to work with, and what it records (build.json). */
import type { CleanupStack } from '../util/cleanup.js';
import type { Runner } from '../exec/runner.js';
import type { Progress, StepHandle } from '../progress.js';
import type { Ufs2Stats } from '../ufs2/types.js';
import type { OutputFormatName } from './formats.js';
import type { KernelConfig } from './kernel-config.js';
import type { PvhKernelRecord } from './pvh-kernel.js';
import type { Arch, SetName } from './sets.js';
import type { XzDecoder } from './xz-decoder.js';

export interface BuildRequest {
  release?: string | undefined;
  /** Names the --dist sets (e.g. 14.3-RELEASE) when their bin/freebsd-version cannot tell. */
  releaseName?: string | undefined;
  arch: Arch;
  mirror: string;
  dist?: string | undefined;
  name: string;
  outDir: string;
  formats: OutputFormatName[];
  /** Root file system size in bytes; undefined: content plus headroom. */
  fsSize?: number | undefined;
  /** Disk size in bytes; undefined: 6 GiB or what the content needs, whichever is larger. */
  diskSize?: number | undefined;
  swapSize: number;
  uefi: boolean;
  hostname: string;
  overlay?: string | undefined;
  /** Build even when the kernel lacks options XENHVM / device xenpci. */
  allowNonXenKernel: boolean;
  cacheDir: string;
  useCache: boolean;
  /** The program that decompresses the sets (resolved from --xz-decoder). */
  xzDecoder: XzDecoder;
  /** SOURCE_DATE_EPOCH; undefined: the newest entry of the sets. */
  sourceDateEpoch?: number | undefined;
  templatesDir: string;
  guestDir: string;
  vcpus: number;
  memoryMiB: number;
}

export interface BuildDeps {
  runner: Runner;
  progress: Progress;
  signal: AbortSignal;
  cleanup: CleanupStack;
  toolVersions?: Record<string, string>;
}

export interface BuildOutput {
  format: OutputFormatName;
  path: string;
  size: number;
  sha256: string;
}

export interface BuildRecord {
  schema: 'fbxen-build/1';
  name: string;
  release: string;
  arch: Arch;
  inputs: { origin: string; manifestSha256: string; sets: { name: SetName; source: string; sha256: string; entries: number }[]; overlay?: string | undefined };
  options: Record<string, unknown>;
  timestamp: number;
  kernel: { ident: string | undefined; machine: string | undefined; source: KernelConfig['source']; xenhvm: boolean; xenpci: boolean; xenOptions: string[] };
  /** The kernel written beside the image for boot --type pvh, or why there is none. */
  pvhKernel: PvhKernelRecord;
  partitions: { index: number; label: string; type: string; guid: string; firstLba: number; lastLba: number; bytes: number }[];
  diskGuid: string;
  filesystem: Ufs2Stats & { label: string };
  entries: number;
  outputs: BuildOutput[];
  tools: Record<string, string>;
  durationsMs: Record<string, number>;
}

export interface BuildResult {
  record: BuildRecord;
  outDir: string;
}

/** Runs one build step under the progress display and records how long it took under `key`. */
export type TimedStep = <T>(key: string, title: string, fn: (h: StepHandle) => Promise<T>) => Promise<T>;
