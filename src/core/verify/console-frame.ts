/**
 * Console framing of fbxen-bundle/1 (docs/probe-protocol.md §2). The guest writes
 *   FBXEN1 BEGIN <run> <phase> <n> <sha256(payload)>
 *   FBXEN1 D <run> <i> <first 8 hex of sha256(line)> <base64 line>
 *   FBXEN1 END <run> <phase>
 * twice. The reader keeps only lines whose own check passes, takes any good copy of each line, and
 * accepts the payload only when its sha256 matches; anything less is "incomplete", never a verdict.
 */
import { createHash } from 'node:crypto';
import { bundleFromTarBytes, type Bundle } from './bundle.js';

/**
 * Width of a base64 line: what FreeBSD's `uuencode -m` writes (19 groups of 4 in 10.x-13.x, `columns = 76`
 * later), so the host's frames match the guest's byte for byte.
 */
export const FRAME_LINE_WIDTH = 76;

const TOKEN = '[A-Za-z0-9][A-Za-z0-9._-]{0,63}';
const BEGIN_RE = new RegExp(`FBXEN1 BEGIN (${TOKEN}) (${TOKEN}) ([1-9][0-9]{0,8}) ([0-9a-f]{64})$`);
const DATA_RE = new RegExp(`FBXEN1 D (${TOKEN}) ([1-9][0-9]{0,8}) ([0-9a-f]{8}) ([A-Za-z0-9+/]{1,76}={0,2})$`);
const END_RE = new RegExp(`FBXEN1 END (${TOKEN}) (${TOKEN})$`);
// CSI/OSC/two-byte escapes and stray control bytes that terminals and serial consoles add.
const NOISE_RE = /\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[@-_]|[\x00-\x08\x0b-\x1f\x7f]/g;

const sha256hex = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

export type ConsoleExtraction =
  | { status: 'complete'; run: string; phase: string; bundle: Bundle }
  | { status: 'incomplete'; run: string; phase: string; missingLines: number; totalLines: number }
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

interface Group {
  run: string;
  phase: string;
  n: number;
  sha: string;
  /** position (line number) of the group's first and last BEGIN line */
  first: number;
  last: number;
}

interface DataLine {
  pos: number;
  i: number;
  text: string;
}

interface Scan {
  groups: Group[];
  data: Map<string, DataLine[]>;
  ends: Map<string, { pos: number; phase: string }[]>;
}

/** `onlyRun`: skip (and do not hash) data lines of other runs. */
function scan(text: string, onlyRun?: string): Scan {
  const groups: Group[] = [];
  const data = new Map<string, DataLine[]>();
  const ends = new Map<string, { pos: number; phase: string }[]>();
  // Positions are character offsets of line starts: monotonic, and no need to count every line.
  let from = 0;
  while (from < text.length) {
    const at = text.indexOf('FBXEN1 ', from);
    if (at < 0) break;
    const lineStart = text.lastIndexOf('\n', at) + 1;
    let lineEnd = text.indexOf('\n', at);
    if (lineEnd < 0) lineEnd = text.length;
    let line = text.slice(lineStart, lineEnd);
    if (/[\x00-\x1f\x7f]/.test(line)) line = line.replace(NOISE_RE, '');
    const found = line.indexOf('FBXEN1 ');
    if (found >= 0) classify(line.slice(found), lineStart);
    from = lineEnd + 1;
  }
  return { groups, data, ends };

  function classify(line: string, p: number) {
    // A kernel message can land mid-line; the latest "FBXEN1 " start is the one that can still be whole.
    const lastStart = line.lastIndexOf('FBXEN1 ');
    if (lastStart > 0) line = line.slice(lastStart);
    let m = DATA_RE.exec(line);
    if (m) {
      const [, run, i, check, b64] = m as unknown as [string, string, string, string, string];
      if (onlyRun !== undefined && run !== onlyRun) return;
      if (sha256hex(b64).slice(0, 8) !== check) return;
      let list = data.get(run);
      if (!list) data.set(run, (list = []));
      list.push({ pos: p, i: Number(i), text: b64 });
      return;
    }
    m = BEGIN_RE.exec(line);
    if (m) {
      const [, run, phase, n, sha] = m as unknown as [string, string, string, string, string];
      const prev = [...groups].reverse().find((g) => g.run === run);
      if (prev && prev.phase === phase && prev.sha === sha && prev.n === Number(n)) prev.last = p;
      else groups.push({ run, phase, n: Number(n), sha, first: p, last: p });
      return;
    }
    m = END_RE.exec(line);
    if (m) {
      const [, run, phase] = m as unknown as [string, string, string];
      let list = ends.get(run);
      if (!list) ends.set(run, (list = []));
      list.push({ pos: p, phase });
    }
  }
}

/** Picks one good copy per index: copies after the group's first BEGIN first, else the nearest before it. */
function assemble(group: Group, lines: DataLine[], windowStart: number, windowEnd: number): (string | undefined)[] {
  const after: (string | undefined)[] = new Array(group.n).fill(undefined);
  const before: (string | undefined)[] = new Array(group.n).fill(undefined);
  for (const d of lines) {
    if (d.pos < windowStart || d.pos >= windowEnd || d.i > group.n) continue;
    if (d.pos > group.first) after[d.i - 1] ??= d.text;
    else before[d.i - 1] = d.text; // the latest one before the BEGIN wins
  }
  return after.map((a, k) => a ?? before[k]);
}

/**
 * Finds the newest complete frame for `run` (default: the run of the newest frame in the log) and
 * `phase` (default: any), and rebuilds its bundle.
 */
export async function extractBundleFromConsole(
  text: string,
  opts: { run?: string | undefined; phase?: string | undefined } = {},
): Promise<ConsoleExtraction> {
  const { groups, data, ends } = scan(text, opts.run);
  const run = opts.run ?? groups.at(-1)?.run ?? [...data.keys()].at(-1);
  if (run === undefined) return { status: 'absent' };
  const runGroups = groups.filter((g) => g.run === run);
  const lines = data.get(run) ?? [];
  const candidates = runGroups.map((g, k) => ({ g, k })).filter(({ g }) => opts.phase === undefined || g.phase === opts.phase);

  let newestIncomplete: ConsoleExtraction | undefined;
  for (const { g, k } of candidates.reverse()) {
    const windowStart = k > 0 ? runGroups[k - 1]!.last + 1 : 0;
    const windowEnd = k + 1 < runGroups.length ? runGroups[k + 1]!.first : Number.POSITIVE_INFINITY;
    const picked = assemble(g, lines, windowStart, windowEnd);
    const missing = picked.filter((l) => l === undefined).length;
    if (missing === 0) {
      const payload = Buffer.from(picked.join(''), 'base64');
      if (sha256hex(payload) === g.sha) {
        try {
          const bundle = await bundleFromTarBytes(payload, `console frame ${g.run}/${g.phase}`);
          return { status: 'complete', run: g.run, phase: g.phase, bundle };
        } catch {
          /* a payload with a matching sha256 that is no bundle: report it as incomplete evidence */
        }
      }
    }
    // Every line was there but the whole did not check out: no single line can be blamed.
    newestIncomplete ??= { status: 'incomplete', run: g.run, phase: g.phase, missingLines: missing || g.n, totalLines: g.n };
  }
  if (newestIncomplete) return newestIncomplete;

  // Data or END lines for the run, but every BEGIN line was lost (or the phase never matched).
  const endPhase = (ends.get(run) ?? []).filter((e) => opts.phase === undefined || e.phase === opts.phase).at(-1)?.phase;
  const phase = opts.phase ?? endPhase ?? runGroups.at(-1)?.phase;
  if (lines.length === 0 && endPhase === undefined) return { status: 'absent' };
  if (phase === undefined) return { status: 'absent' };
  const highest = lines.reduce((m, d) => Math.max(m, d.i), 0);
  const have = new Set(lines.map((d) => d.i)).size;
  return { status: 'incomplete', run, phase, missingLines: Math.max(1, highest - have), totalLines: Math.max(highest, 1) };
}
