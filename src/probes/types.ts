/**
 * A probe is data: the sections it reads, a parser (raw text → zod-validated facts), a verdict
 * function over those facts, and a hint for the user when it fails. Parsers never throw; facts they
 * cannot read are left out, and a verdict without positive evidence is never `pass`.
 */
import type { HostRoundTrip, RoundTripNotArranged } from '../core/net/roundtrip.js';

/** One line of a bundle's `index`: a section, the exit status of the command that wrote it, the command. */
export interface IndexEntry {
  name: string;
  status: number;
  command: string;
}

/**
 * An fbxen-bundle/1 as read (docs/probe-protocol.md): what every probe takes. Declared here, with the
 * probes that read it, so that the probes need nothing from core/verify, which reads and packs bundles.
 */
export interface Bundle {
  meta: Record<string, string>;
  index: IndexEntry[];
  sections: Map<string, string>;
}

export type Verdict = 'pass' | 'fail' | 'skip' | 'inconclusive';

export interface ProbeOutcome {
  verdict: Verdict;
  /** The lines or values the verdict was drawn from (for skip/inconclusive: the reason first). */
  evidence: string[];
  /** Overrides the probe's general hint when the failure has a more precise fix. */
  hint?: string;
}

export interface ProbeContext {
  /** The bundle taken before a suspend/resume or migration (only the migration probe uses it). */
  before?: Bundle | undefined;
  /** Set when the host knows a CD drive was attached to this guest (the run record of fbxen boot): why it knows. */
  cdAttached?: string | undefined;
  /** How the host booted this guest (fbxen boot's run record: --type), and why it knows. */
  bootType?: { type: 'hvm' | 'pvh'; source: string } | undefined;
  /** What the host knows of this guest's network (the netfront probe): the vifs it gave, the round trip. */
  net?: NetHostKnowledge | undefined;
}

/** The host's side of the network evidence, from fbxen's run record (docs/netfront-design.md §6.4). */
export interface NetHostKnowledge {
  /** why the host knows (the run record it was read from) */
  source: string;
  /** the vifs the toolstack was given (MAC and devid when known); undefined: not known */
  vifs?: { mac?: string | undefined; devid?: number | undefined; bridge?: string | undefined }[] | undefined;
  /** the host side of the traffic round trip, or why it could not be arranged */
  roundTrip?: HostRoundTrip | RoundTripNotArranged | undefined;
}

export interface Probe<T> {
  id: string;
  /** The claim the probe checks, in one sentence. */
  claim: string;
  /** Sections of the bundle it reads (documentation, and what `inconclusive` says is missing). */
  sections: readonly string[];
  parse(bundle: Bundle, ctx: ProbeContext): T;
  verdict(facts: T, ctx: ProbeContext): ProbeOutcome;
  /** What to do when the probe fails. */
  hint: string;
  /** A pass also needs positive evidence that the guest runs on Xen (every probe but xen-guest). */
  requiresXen?: boolean;
}

/** Helper that keeps the generic type of each probe while the list is heterogeneous. */
export function defineProbe<T>(probe: Probe<T>): Probe<unknown> {
  return probe as unknown as Probe<unknown>;
}

export const pass = (...evidence: string[]): ProbeOutcome => ({ verdict: 'pass', evidence });
export const fail = (evidence: string[], hint?: string): ProbeOutcome => (hint ? { verdict: 'fail', evidence, hint } : { verdict: 'fail', evidence });
export const skip = (...evidence: string[]): ProbeOutcome => ({ verdict: 'skip', evidence });
export const inconclusive = (...evidence: string[]): ProbeOutcome => ({ verdict: 'inconclusive', evidence });
