/** What migrate-test is asked (the command's flags as one request), what it gets, and what it hands back. */
import type { CoreDeps } from '../deps.js';
import type { FbxenError } from '../errors.js';
import type { Toolstack } from '../toolstack/types.js';
import type { ConsoleCapture } from './capture.js';
import type { ConsoleKeyboard, SshTarget } from './channel.js';
import type { MigrateReport } from './report.js';
import type { GuestChannel, GuestLoad, MigrateMode } from './types.js';

export interface MigrateTestRequest {
  toolstack: 'xl' | 'xapi';
  domain: string;
  /** xl: 'localhost' or a host; xapi: a pool host (default: another one) */
  to?: string | undefined;
  iterations: number;
  mode: MigrateMode;
  load: GuestLoad;
  keepGoing: boolean;
  evidence: 'console' | 'ssh';
  ssh?: SshTarget | undefined;
  /** seconds each migration, collection and heartbeat wait may take */
  stepTimeoutSec: number;
  artifactsRoot: string;
  runId?: string | undefined;
  junit?: string | undefined;
  dryRun: boolean;
  guestCollector?: string | undefined;
  guestHeartbeat?: string | undefined;
  destSr?: string | undefined;
  backTo?: string | undefined;
  /** seconds of heartbeat before and after each migration (default 2) */
  rollSeconds?: number | undefined;
  /** xl: the source dom0, ssh://USER@HOST[:PORT], and how to trust and log in to it (unset: this machine) */
  host?: { url: string; knownHosts?: string | undefined; identity?: string | undefined } | undefined;
  /** --toolstack xapi: how to trust the pool (the URL and credentials come from FBXEN_XAPI_*) */
  xapi?: { caFile?: string | undefined; insecure: boolean; insecureHttp: boolean } | undefined;
}

export interface MigrateTestDeps extends CoreDeps {
  now?: () => number;
  pollMs?: number;
  /** test seams: a toolstack or channel double */
  toolstack?: Toolstack;
  channel?: (keyboard: ConsoleKeyboard, capture: ConsoleCapture) => GuestChannel;
  /** console settle time before typing (ms) */
  settleMs?: number;
}

export interface MigrateTestOutcome {
  report?: MigrateReport;
  exitCode: 0 | 1 | 2;
  /** thrown by the command after it printed the report (exit code 1, 2, 5, 6...) */
  error?: FbxenError;
  planText?: string;
}
