/**
 * Console framing of fbxen-bundle/1 (docs/probe-protocol.md §2). The guest writes
 *   FBXEN1 BEGIN <run> <phase> <n> <sha256(payload)>
 *   FBXEN1 D <run> <i> <first 8 hex of sha256(line)> <base64 line>
 *   FBXEN1 END <run> <phase>
 * twice. The reader keeps only lines whose own check passes, takes any good copy of each line, and
 * accepts the payload only when its sha256 matches; anything less is "incomplete", never a verdict.
 * What a guest claims is checked against documented limits before anything is allocated for it: a
 * frame beyond them is "rejected" with the reason.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { InputError } from '../errors.js';
import { NAME_TOKEN } from '../util/names.js';
import { bundleFromTarBytes, MAX_BUNDLE_BYTES, type Bundle } from './bundle.js';

/**
 * Width of a base64 line: what FreeBSD's `uuencode -m` writes (19 groups of 4 in 10.x-13.x, `columns = 76`
 * later), so the host's frames match the guest's byte for byte.
 */
export const FRAME_LINE_WIDTH = 76;

const TOKEN = NAME_TOKEN;
const BEGIN_RE = new RegExp(`FBXEN1 BEGIN (${TOKEN}) (${TOKEN}) ([1-9][0-9]{0,8}) ([0-9a-f]{64})$`);
const DATA_RE = new RegExp(`FBXEN1 D (${TOKEN}) ([1-9][0-9]{0,8}) ([0-9a-f]{8}) ([A-Za-z0-9+/]{1,76}={0,2})$`);
const END_RE = new RegExp(`FBXEN1 END (${TOKEN}) (${TOKEN})$`);
// CSI/OSC/two-byte escapes and stray control bytes that terminals and serial consoles add.
const NOISE_RE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

const sha256hex = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

export type ConsoleExtraction =
  | { status: 'complete'; run: string; phase: string; bundle: Bundle }
  | { status: 'incomplete'; run: string; phase: string; missingLines: number; totalLines: number }
  /** The guest sent something no bundle can be: over a limit (docs/probe-protocol.md §5) or malformed. */
  | { status: 'rejected'; run: string; phase: string; reason: string }
  | { status: 'absent' };

/**
 * The host's reference encoder: the same grammar and line width as guest/fbxen-collect, written
 * `copies` times (the collector writes 2). Test doubles that play a guest console use it.
 */
export function encodeConsoleFrame(payload: Uint8Array, run: string, phase: string, copies = 2): string {
  const b64 = Buffer.from(payload).toString('base64');
  const lines: string[] = [];
  for (let i = 0; i < b64.length; i += FRAME_LINE_WIDTH) lines.push(b64.slice(i, i + FRAME_LINE_WIDTH));
  if (lines.length === 0) lines.push('');
  const frame = [
    `FBXEN1 BEGIN ${run} ${phase} ${lines.length} ${sha256hex(payload)}`,
    ...lines.map((l, i) => `FBXEN1 D ${run} ${i + 1} ${sha256hex(l).slice(0, 8)} ${l}`),
    `FBXEN1 END ${run} ${phase}`,
  ].join('\n');
  return Array.from({ length: copies }, () => `${frame}\n`).join('');
}

/**
 * Limits on what a guest's frames may claim (docs/probe-protocol.md §5). A base64 line of 76 characters
 * carries 57 bytes and the payload is gzip(tar), never larger than the bundle limit for a real bundle,
 * so no acceptable frame has more lines than this; a header claiming more is rejected as it stands.
 */
export const MAX_FRAME_LINES = Math.ceil(MAX_BUNDLE_BYTES / 57);
/**
 * Frames of one run kept as candidates; an older one is forgotten (with the data lines only its window
 * held) when a newer one arrives. A migrate-test run writes at most 1,001 (its iteration limit + 1).
 */
export const MAX_LIVE_FRAMES = 4096;
/**
 * Only the last this many characters of a console line are looked at: the frame line is its tail (a
 * frame line is at most 217 characters; the rest is room for terminal escapes inside it).
 */
export const MAX_LINE_CHARS = 64 * 1024;

/** Counts of the reader's work, for tests that check it is linear (not timed). */
export interface ReaderWork {
  /** lines holding `FBXEN1 ` that were classified */
  classified: number;
  /** data lines looked at while assembling candidate frames */
  visited: number;
  /** line slots allocated while assembling (bounded by the lines received, never by a claimed count) */
  slots: number;
}

interface Group {
  run: string;
  phase: string;
  n: number;
  sha: string;
  /** position (line start) of the group's first and last BEGIN line */
  first: number;
  last: number;
}

interface DataLine {
  pos: number;
  i: number;
  text: string;
}

interface RunState {
  /** the run's live candidate frames, oldest first (at most MAX_LIVE_FRAMES) */
  groups: Group[];
  /** the run's good data lines in console order, from the oldest live window on */
  lines: DataLine[];
  /** `last` of the newest forgotten group: the oldest live window starts after it */
  forgotten: number;
  endPhases: Set<string>;
  lastEndPhase: string | undefined;
  sawData: boolean;
}

/**
 * The console reader, fed in pieces (`push`) as the log grows: `fbxen boot` hands it only the bytes
 * added since its last look, `verify` the whole log at once. Memory follows what was received: the
 * partial last line (at most MAX_LINE_CHARS) and the good frame lines of the runs it keeps (only
 * `onlyRun`'s when one is given).
 */
export class ConsoleFrameReader {
  private readonly runs = new Map<string, RunState>();
  private newestBeginRun: string | undefined;
  private newestDataRun: string | undefined;
  private partial = '';
  private partialStart = 0;
  /** Grows whenever a line of a kept run arrives; the result can only change when it does. */
  version = 0;

  constructor(
    private readonly onlyRun?: string,
    private readonly work?: ReaderWork,
  ) {}

  /** Hands the reader the next piece of the log (any split, even mid-line). */
  push(chunk: string): void {
    if (chunk.length === 0) return;
    const text = this.partial.length ? this.partial + chunk : chunk;
    const base = this.partialStart;
    const lastNl = text.lastIndexOf('\n');
    if (lastNl < 0) {
      this.keepPartial(text, base);
      return;
    }
    this.scan(text, base, lastNl);
    this.keepPartial(text.slice(lastNl + 1), base + lastNl + 1);
  }

  /** The log ends here: its last line counts even without a newline. */
  end(): void {
    if (this.partial.length) this.scan(this.partial, this.partialStart, this.partial.length);
    this.partialStart += this.partial.length;
    this.partial = '';
  }

  private keepPartial(text: string, start: number): void {
    // A line longer than any frame line: only its tail can still hold one.
    const cut = Math.max(0, text.length - MAX_LINE_CHARS);
    this.partial = cut ? text.slice(cut) : text;
    this.partialStart = start + cut;
  }

  /** Classifies the lines of text[0, end): the lines that hold `FBXEN1 `, found with indexOf. */
  private scan(text: string, base: number, end: number): void {
    let from = 0;
    while (from < end) {
      const at = text.indexOf('FBXEN1 ', from);
      if (at < 0 || at >= end) break;
      let lineStart = text.lastIndexOf('\n', at) + 1;
      let lineEnd = text.indexOf('\n', at);
      if (lineEnd < 0 || lineEnd > end) lineEnd = end;
      from = lineEnd + 1;
      if (lineEnd - lineStart > MAX_LINE_CHARS) lineStart = lineEnd - MAX_LINE_CHARS;
      let line = text.slice(lineStart, lineEnd);
      if (/[\x00-\x1f\x7f]/.test(line)) line = line.replace(NOISE_RE, '');
      // A kernel message can land mid-line; the latest "FBXEN1 " start is the one that can still be whole.
      const found = line.lastIndexOf('FBXEN1 ');
      if (found >= 0) this.classify(found > 0 ? line.slice(found) : line, base + lineStart);
    }
  }

  private state(run: string): RunState {
    let st = this.runs.get(run);
    if (!st) this.runs.set(run, (st = { groups: [], lines: [], forgotten: -1, endPhases: new Set(), lastEndPhase: undefined, sawData: false }));
    return st;
  }

  private classify(line: string, p: number): void {
    if (this.work) this.work.classified++;
    // The line starts with its only "FBXEN1 ", so the character after it picks the one grammar to try.
    const kind = line.charCodeAt(7);
    let m = kind === 0x44 /* D */ ? DATA_RE.exec(line) : null;
    if (m) {
      const [, run, i, check, b64] = m as unknown as [string, string, string, string, string];
      if (this.onlyRun !== undefined && run !== this.onlyRun) return;
      // No acceptable frame has this line: it is noise, whatever its check says.
      if (Number(i) > MAX_FRAME_LINES) return;
      if (sha256hex(b64).slice(0, 8) !== check) return;
      const st = this.state(run);
      if (!st.sawData) this.newestDataRun = run; // the run whose first data line came last, as before
      st.sawData = true;
      st.lines.push({ pos: p, i: Number(i), text: b64 });
      this.version++;
      return;
    }
    m = kind === 0x42 /* B */ ? BEGIN_RE.exec(line) : null;
    if (m) {
      const [, run, phase, n, sha] = m as unknown as [string, string, string, string, string];
      if (this.onlyRun !== undefined && run !== this.onlyRun) return;
      const st = this.state(run);
      this.newestBeginRun = run;
      this.version++;
      const prev = st.groups.at(-1);
      if (prev && prev.phase === phase && prev.sha === sha && prev.n === Number(n)) {
        prev.last = p;
        return;
      }
      st.groups.push({ run, phase, n: Number(n), sha, first: p, last: p });
      if (st.groups.length > MAX_LIVE_FRAMES) this.forget(st);
      return;
    }
    m = kind === 0x45 /* E */ ? END_RE.exec(line) : null;
    if (m) {
      const [, run, phase] = m as unknown as [string, string, string];
      if (this.onlyRun !== undefined && run !== this.onlyRun) return;
      const st = this.state(run);
      st.endPhases.add(phase);
      st.lastEndPhase = phase;
      this.version++;
    }
  }

  /** Drops the oldest candidate, and the data lines no live window holds any more (in batches). */
  private forget(st: RunState): void {
    st.forgotten = st.groups.shift()!.last;
    const keepFrom = lowerBound(st.lines, st.forgotten + 1);
    if (keepFrom > 1024 && keepFrom * 2 > st.lines.length) st.lines = st.lines.slice(keepFrom);
  }

  /**
   * The newest complete frame of `run` (default: the run of the newest frame seen) and `phase`
   * (default: any), its bundle rebuilt; or why there is none.
   */
  async result(phase?: string): Promise<ConsoleExtraction> {
    const run = this.onlyRun ?? this.newestBeginRun ?? this.newestDataRun;
    const st = run === undefined ? undefined : this.runs.get(run);
    if (run === undefined || !st) return { status: 'absent' };
    const { groups, lines } = st;

    let newestFailure: ConsoleExtraction | undefined;
    for (let k = groups.length - 1; k >= 0; k--) {
      const g = groups[k]!;
      if (phase !== undefined && g.phase !== phase) continue;
      if (g.n > MAX_FRAME_LINES) {
        newestFailure ??= {
          status: 'rejected',
          run: g.run,
          phase: g.phase,
          reason: `evidence rejected: the frame of run ${g.run}, phase ${g.phase} claims ${g.n} lines, more than the ${MAX_FRAME_LINES} a bundle of at most ${MAX_BUNDLE_BYTES / 1024 / 1024} MiB can take`,
        };
        continue;
      }
      // Its window: from after the previous frame's last BEGIN to the next frame's first. Each data line
      // lies in at most two windows, so assembling every candidate is linear in the lines kept.
      const windowStart = k > 0 ? groups[k - 1]!.last + 1 : st.forgotten + 1;
      const windowEnd = k + 1 < groups.length ? groups[k + 1]!.first : Number.POSITIVE_INFINITY;
      const picked = this.assemble(g, lines, windowStart, windowEnd);
      const missing = g.n - picked.size;
      if (missing === 0) {
        const parts: string[] = [];
        for (let i = 1; i <= g.n; i++) parts.push(picked.get(i)!);
        const payload = Buffer.from(parts.join(''), 'base64');
        if (sha256hex(payload) === g.sha) {
          try {
            const bundle = await bundleFromTarBytes(payload, `console frame ${g.run}/${g.phase}`);
            return { status: 'complete', run: g.run, phase: g.phase, bundle };
          } catch (err) {
            // The guest sent exactly this payload (its sha256 matches): an over-limit or malformed
            // bundle is rejected evidence, not lost lines.
            if (!(err instanceof InputError)) throw err;
            newestFailure ??= { status: 'rejected', run: g.run, phase: g.phase, reason: err.message };
            continue;
          }
        }
      }
      // Every line was there but the whole did not check out: no single line can be blamed.
      newestFailure ??= { status: 'incomplete', run: g.run, phase: g.phase, missingLines: missing || g.n, totalLines: g.n };
    }
    if (newestFailure) return newestFailure;

    // Data or END lines for the run, but every BEGIN line was lost (or the phase never matched).
    const endPhase = phase === undefined ? st.lastEndPhase : st.endPhases.has(phase) ? phase : undefined;
    const phaseOut = phase ?? endPhase ?? groups.at(-1)?.phase;
    if (lines.length === 0 && endPhase === undefined) return { status: 'absent' };
    if (phaseOut === undefined) return { status: 'absent' };
    let highest = 0;
    const have = new Set<number>();
    for (const d of lines) {
      highest = Math.max(highest, d.i);
      have.add(d.i);
    }
    return { status: 'incomplete', run, phase: phaseOut, missingLines: Math.max(1, highest - have.size), totalLines: Math.max(highest, 1) };
  }

  /**
   * One good copy per index within the window: the first copy after the group's first BEGIN, else the
   * latest one before it. The map holds only lines that arrived, whatever the header claims.
   */
  private assemble(group: Group, lines: DataLine[], windowStart: number, windowEnd: number): Map<number, string> {
    const after = new Map<number, string>();
    const before = new Map<number, string>();
    for (let j = lowerBound(lines, windowStart); j < lines.length; j++) {
      const d = lines[j]!;
      if (d.pos >= windowEnd) break;
      if (this.work) this.work.visited++;
      if (d.i > group.n) continue;
      if (d.pos > group.first) {
        if (!after.has(d.i)) after.set(d.i, d.text);
      } else before.set(d.i, d.text);
    }
    for (const [i, text] of before) if (!after.has(i)) after.set(i, text);
    if (this.work) this.work.slots += after.size;
    return after;
  }
}

/** The first index whose line starts at or after `pos` (lines are in console order). */
function lowerBound(lines: DataLine[], pos: number): number {
  let lo = 0;
  let hi = lines.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (lines[mid]!.pos < pos) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Finds the newest complete frame for `run` (default: the run of the newest frame in the log) and
 * `phase` (default: any), and rebuilds its bundle.
 */
export async function extractBundleFromConsole(
  text: string,
  opts: { run?: string | undefined; phase?: string | undefined; work?: ReaderWork | undefined } = {},
): Promise<ConsoleExtraction> {
  const reader = new ConsoleFrameReader(opts.run, opts.work);
  reader.push(text);
  reader.end();
  return reader.result(opts.phase);
}

/**
 * The same over a console log file, read in 1 MiB pieces: memory is what the reader keeps, not the
 * log's size, and a log longer than any string (V8: about 512 MiB) can still be read.
 */
export async function extractBundleFromConsoleFile(
  path: string,
  opts: { run?: string | undefined; phase?: string | undefined; work?: ReaderWork | undefined } = {},
): Promise<ConsoleExtraction> {
  const reader = new ConsoleFrameReader(opts.run, opts.work);
  try {
    // latin1: one byte per character, so a piece never ends inside a character.
    for await (const piece of createReadStream(path, { encoding: 'latin1', highWaterMark: 1024 * 1024 })) reader.push(piece as string);
  } catch (err) {
    throw new InputError(`cannot read console log ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { hint: 'check the path', cause: err });
  }
  reader.end();
  return reader.result(opts.phase);
}
