/**
 * The ports of migrate-test: a MigrationDriver per toolstack (migrate, where is the domain, is it alive,
 * its console) and a GuestChannel (heartbeat and collector in the guest, over the console or ssh).
 */
import type { Bundle } from '../verify/index.js';
import { TimeoutError, ToolstackError, type ErrorOptions } from '../errors.js';
import type { ConsoleCapture } from './capture.js';

export type MigrateMode = 'live' | 'save-restore';
export type GuestLoad = 'none' | 'cpu' | 'disk' | 'all';

/** Where a domain is: which host, under which id and name, in what state. */
export interface DomainLocation {
  host: string;
  /** xl domid, or XAPI VM ref */
  id: string;
  name: string;
  state: 'running' | 'paused' | 'suspended' | 'crashed' | 'halted' | 'saved' | 'unknown';
  /** e.g. the checkpoint file holding a saved domain, or the other half of an interrupted xl migration */
  note?: string | undefined;
}

export function describeLocation(l: DomainLocation | undefined): string {
  if (!l) return 'nowhere: the domain vanished';
  return `${l.name} (${l.id}) ${l.state} on ${l.host}${l.note ? `; ${l.note}` : ''}`;
}

export interface MigrationOutcome {
  /** the toolstack's own time for the migration (command or task), ms */
  toolstackMs: number;
  where: DomainLocation | undefined;
}

export interface MigrationDriver {
  readonly toolstack: 'xl' | 'xapi';
  /** undefined when migration can be tried; else the reason to skip (not a failure) */
  preflight(mode: MigrateMode): Promise<string | undefined>;
  /** where the domain is now; undefined when it is nowhere */
  locate(): Promise<DomainLocation | undefined>;
  /** iteration N (1-based): one migration (or save + restore); throws MigrationError with where it is */
  migrate(iteration: number, mode: MigrateMode, timeoutMs: number): Promise<MigrationOutcome>;
  /** (re)attach the serial console to `capture` (after boot and after each migration); false when it cannot be read from here */
  attachConsole(capture: ConsoleCapture): Promise<boolean>;
  /** type into the guest's serial console */
  writeConsole(text: string): void;
  close(): Promise<void>;
  /** the exact steps of one iteration, for --dry-run */
  planIteration(iteration: number, mode: MigrateMode): string[];
  planPreflight(mode: MigrateMode): string[];
}

export interface GuestChannel {
  readonly kind: 'console' | 'ssh';
  /** ready to run commands in the guest (a shell on the console) */
  prepare(): Promise<void>;
  startHeartbeat(hbRun: string, load: GuestLoad, maxSeconds: number): Promise<void>;
  stopHeartbeat(hbRun: string): Promise<void>;
  /** lines that carry the heartbeat, with host arrival times */
  heartbeatLines(): import('./heartbeat.js').StampedLine[];
  /** runs the collector in the guest and returns its bundle */
  collect(run: string, phase: string, timeoutMs: number): Promise<Bundle>;
  close(): Promise<void>;
  planCollect(run: string, phase: string): string;
  planHeartbeat(hbRun: string, load: GuestLoad, maxSeconds: number): string[];
}

/** A migration that failed; `where` says where the domain is now (fbxen never destroys it). */
export class MigrationError extends ToolstackError {
  constructor(
    message: string,
    readonly where: DomainLocation | undefined,
    options: ErrorOptions = {},
  ) {
    super(message, options);
  }
}

export class MigrationTimeoutError extends TimeoutError {
  constructor(
    message: string,
    readonly where: DomainLocation | undefined,
    options: ErrorOptions = {},
  ) {
    super(message, options);
  }
}
