/**
 * What a boot (xl or xapi) hands back. Both toolstack drivers return this shape so `fbxen boot` can print,
 * verify and clean up without knowing which toolstack ran.
 */
import type { RunOutcome, ToolstackName } from '../run/artifacts.js';
import type { Report } from '../verify/index.js';

export type { RunOutcome, ToolstackName };

export interface BootResult {
  /** The run id (also the nonce on the fbxen CD). */
  run: string;
  /** The domain / VM name. */
  name: string;
  toolstack: ToolstackName;
  /** `<root>/<name>/<run>/`: config, console.log, transcript.log, run.json, reports. */
  artifactsDir: string;
  consoleLog: string;
  /** The domain fbxen created: xl domid or XAPI VM uuid; kept=true when --keep left it running. */
  domain: { id: string; kept: boolean };
  /** Present when the boot also verified (--verify). */
  report?: Report;
  /** With --dry-run: the config and the command plan that would have run. */
  planText?: string;
}

/** What a boot request says whatever the toolstack. */
export interface BootRequestBase {
  image: string;
  vcpus: number;
  memoryMiB: number;
  iso?: string | undefined;
  emptyCdrom: boolean;
  keep: boolean;
  timeoutSec: number;
  dryRun: boolean;
  verify: boolean;
  artifactsRoot: string;
  /** hvm (default) or pvh: the kernel entered directly by Xen (docs/pvh.md). */
  type?: 'hvm' | 'pvh' | undefined;
  /** PVH: the kernel to boot instead of the one build kept beside the image. */
  kernel?: string | undefined;
  /** PVH: --kernel-env KEY=VALUE entries, in order. */
  kernelEnv?: readonly string[] | undefined;
  /** Fixed run id (CI correlation, golden plans); default: time + random. */
  runId?: string | undefined;
}
