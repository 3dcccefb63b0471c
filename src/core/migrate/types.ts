/**
 * The guest side of migrate-test: a GuestChannel (heartbeat and collector in the guest, over the console
 * or ssh). The toolstack side is a Toolstack (src/core/toolstack/types.ts); its migration types are
 * re-exported here for migrate-test's importers.
 */
import type { Bundle } from '../verify/index.js';

export { describeLocation, MigrationError, MigrationTimeoutError, type DomainLocation, type MigrateMode, type MigrationOutcome } from '../toolstack/types.js';

export type GuestLoad = 'none' | 'cpu' | 'disk' | 'all';

/** The heartbeat's network beats: one short TCP connection to host:port at most every everyMs, carrying the beat's number (net/beats.ts). */
export interface BeatTarget {
  host: string;
  port: number;
  everyMs: number;
}

export interface GuestChannel {
  readonly kind: 'console' | 'ssh';
  /** ready to run commands in the guest (a shell on the console) */
  prepare(): Promise<void>;
  /** `beat`: where the heartbeat also sends its network beats (network-check.ts), when arranged */
  startHeartbeat(hbRun: string, load: GuestLoad, maxSeconds: number, beat?: BeatTarget): Promise<void>;
  stopHeartbeat(hbRun: string): Promise<void>;
  /** lines that carry the heartbeat, with host arrival times */
  heartbeatLines(): import('./heartbeat.js').StampedLine[];
  /** runs the collector in the guest and returns its bundle; `guestDown` (polled while the console is read) says why the guest can no longer answer */
  collect(run: string, phase: string, timeoutMs: number, guestDown?: () => Promise<string | undefined>): Promise<Bundle>;
  close(): Promise<void>;
  planCollect(run: string, phase: string): string;
  planHeartbeat(hbRun: string, load: GuestLoad, maxSeconds: number): string[];
}
