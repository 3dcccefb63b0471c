/**
 * Property tests of the console framing: the round trip survives random noise, interleaved kernel
 * lines, CRLF, terminal escapes and the loss of any lines as long as one good copy of each remains;
 * losing both copies of k lines is reported as k missing lines, never as a bundle.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ConsoleFrameReader, MAX_LINE_CHARS } from '../../src/core/verify/console-frame.js';
import { encodeConsoleFrame, extractBundleFromConsole, packBundle, type Bundle } from '../../src/core/verify/index.js';

const token = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,20}$/);
const sectionName = fc.stringMatching(/^[a-z0-9][a-z0-9.-]{0,12}$/);

const bundleArb: fc.Arbitrary<Bundle> = fc
  .record({
    run: token,
    phase: token,
    sections: fc.dictionary(sectionName, fc.string({ maxLength: 3000 }), { maxKeys: 6 }),
  })
  .map(({ run, phase, sections }) => ({
    meta: { bundle: 'fbxen-bundle/1', run, phase },
    index: Object.keys(sections).map((name) => ({ name, status: 0, command: `cmd ${name}` })),
    sections: new Map(Object.entries(sections)),
  }));

// Kernel chatter that may land between frame lines (none of it contains a frame line).
const noiseLine = fc.oneof(
  fc.constantFrom('xn0: link state changed to UP', 'login: ', '', 'Starting sshd.', 'FBXEN1 D', 'FBXEN1 BEGIN junk', 'random: unblocking device.'),
  fc.string({ maxLength: 80 }).filter((s) => !s.includes('\n') && !s.includes('FBXEN1')),
);
const escape = fc.constantFrom('', '\x1b[0m', '\x1b[2K', '\x1b]0;title\x07', '\r', '\x1b[1;32m');

function sameBundle(a: Bundle, b: Bundle) {
  expect(b.meta).toEqual(a.meta);
  expect(b.index).toEqual(a.index);
  expect(new Map(b.sections)).toEqual(new Map(a.sections));
}

describe('console framing (property)', () => {
  it('round trip under noise, escapes, CRLF and line loss in one copy at a time', async () => {
    await fc.assert(
      fc.asyncProperty(
        bundleArb,
        fc.array(fc.tuple(fc.nat(), noiseLine), { maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.array(fc.tuple(fc.nat(), escape), { maxLength: 20 }),
        fc.boolean(),
        async (bundle, noise, losses, escapes, crlf) => {
          const run = bundle.meta.run!;
          const phase = bundle.meta.phase!;
          const lines = encodeConsoleFrame(await packBundle(bundle), run, phase).trimEnd().split('\n');
          const per = lines.length / 2;
          // lose lines, but never both copies of the same line
          const lost = new Set<number>();
          for (const l of losses) {
            const i = l % lines.length;
            const twin = i < per ? i + per : i - per;
            if (!lost.has(twin)) lost.add(i);
          }
          let kept = lines.map((l, i) => (lost.has(i) ? undefined : l));
          for (const [at, esc] of escapes) {
            const i = at % kept.length;
            if (kept[i] !== undefined) kept[i] = esc + kept[i]!;
          }
          let out: string[] = kept.filter((l): l is string => l !== undefined);
          for (const [at, n] of noise) out.splice(at % (out.length + 1), 0, n);
          if (crlf) out = out.map((l) => `${l}\r`);
          const got = await extractBundleFromConsole(out.join('\n'), { run });
          expect(got.status).toBe('complete');
          if (got.status === 'complete') sameBundle(bundle, got.bundle);
          kept = [];
        },
      ),
      { numRuns: 120 },
    );
  });

  it('both copies of k lines lost: incomplete with missingLines = k', async () => {
    await fc.assert(
      fc.asyncProperty(bundleArb, fc.uniqueArray(fc.nat(), { minLength: 1, maxLength: 5 }), async (bundle, picks) => {
        const run = bundle.meta.run!;
        const lines = encodeConsoleFrame(await packBundle(bundle), run, bundle.meta.phase!).trimEnd().split('\n');
        const per = lines.length / 2;
        const n = per - 2;
        const data = [...new Set(picks.map((p) => 1 + (p % n)))]; // data line positions 1..n
        const drop = new Set(data.flatMap((i) => [i, i + per]));
        const got = await extractBundleFromConsole(lines.filter((_l, i) => !drop.has(i)).join('\n'), { run });
        expect(got).toEqual({ status: 'incomplete', run, phase: bundle.meta.phase, missingLines: data.length, totalLines: n });
      }),
      { numRuns: 60 },
    );
  });

  it('a corrupted character in a data line invalidates only that copy', async () => {
    await fc.assert(
      fc.asyncProperty(bundleArb, fc.nat(), fc.nat(), async (bundle, pick, pos) => {
        const run = bundle.meta.run!;
        const lines = encodeConsoleFrame(await packBundle(bundle), run, bundle.meta.phase!).trimEnd().split('\n');
        const per = lines.length / 2;
        const i = 1 + (pick % (per - 2));
        const line = lines[i]!;
        const b64start = line.lastIndexOf(' ') + 1;
        const at = b64start + (pos % (line.length - b64start));
        const flipped = line[at] === 'A' ? 'B' : 'A';
        lines[i] = line.slice(0, at) + flipped + line.slice(at + 1);
        const one = await extractBundleFromConsole(lines.join('\n'), { run });
        expect(one.status).toBe('complete');
        // the same damage in the second copy too: that line is missing
        lines[i + per] = lines[i]!;
        const both = await extractBundleFromConsole(lines.join('\n'), { run });
        expect(both).toMatchObject({ status: 'incomplete', missingLines: 1 });
      }),
      { numRuns: 60 },
    );
  });

  it('the newest complete frame of the run wins; other runs are ignored', async () => {
    await fc.assert(
      fc.asyncProperty(bundleArb, bundleArb, async (a, b) => {
        fc.pre(a.meta.run !== b.meta.run);
        const older = { ...b, meta: { ...b.meta, run: a.meta.run! } };
        const text = [
          encodeConsoleFrame(await packBundle(older), a.meta.run!, a.meta.phase!),
          encodeConsoleFrame(await packBundle(b), b.meta.run!, b.meta.phase!),
          encodeConsoleFrame(await packBundle(a), a.meta.run!, a.meta.phase!),
        ].join('kernel: noise\n');
        const got = await extractBundleFromConsole(text, { run: a.meta.run });
        expect(got.status).toBe('complete');
        if (got.status === 'complete') sameBundle(a, got.bundle);
        const other = await extractBundleFromConsole(text, { run: b.meta.run });
        expect(other.status).toBe('complete');
      }),
      { numRuns: 40 },
    );
  });

  it('hostile headers and noise leave the result unchanged (one copy of the frame untouched)', async () => {
    // Lines a hostile guest can print: over-limit claims, headers of this run with a wrong sha256 or a
    // count it never sends, other runs' headers, data lines past any frame, broken checks.
    const hex64 = fc.stringMatching(/^[0-9a-f]{64}$/);
    const hostile = (run: string) =>
      fc.oneof(
        fc.constantFrom(`FBXEN1 BEGIN ${run} boot 999999999 ${'ab'.repeat(32)}`, `FBXEN1 BEGIN ${run} boot 1177350 ${'cd'.repeat(32)}`, `FBXEN1 D ${run} 999999999 00000000 QUFB`, `FBXEN1 END ${run} boot`),
        fc.tuple(token, token, fc.integer({ min: 1, max: 999_999_999 }), hex64).map(([r, p, n, sha]) => `FBXEN1 BEGIN ${r} ${p} ${n} ${sha}`),
        fc.tuple(token, fc.integer({ min: 1, max: 5000 }), hex64).map(([p, n, sha]) => `FBXEN1 BEGIN ${run} ${p} ${n} ${sha}`),
        fc.tuple(fc.integer({ min: 1, max: 999_999_999 }), fc.stringMatching(/^[A-Za-z0-9+/]{1,76}$/)).map(([i, b64]) => `FBXEN1 D ${run} ${i} 0000000g ${b64}`),
        noiseLine,
      );
    const caseArb = bundleArb.chain((bundle) =>
      fc.record({ bundle: fc.constant(bundle), inserts: fc.array(fc.tuple(fc.nat(), fc.boolean(), hostile(bundle.meta.run!)), { maxLength: 25 }), asked: fc.boolean() }),
    );
    await fc.assert(
      fc.asyncProperty(caseArb, async ({ bundle, inserts, asked }) => {
        const run = bundle.meta.run!;
        const lines = encodeConsoleFrame(await packBundle(bundle), run, bundle.meta.phase!).trimEnd().split('\n');
        const per = lines.length / 2;
        const clean = await extractBundleFromConsole(lines.join('\n'), { run: asked ? run : undefined });
        expect(clean.status).toBe('complete');
        // Lines naming this run go before or inside the first copy, or after both copies: never into the
        // second copy as well, which no reader could survive. Other lines go anywhere.
        const placed = inserts.map(([at, early, text]) => {
          const ofRun = text.includes(` ${run} `);
          return { pos: !ofRun ? at % (lines.length + 1) : early ? at % (per + 1) : lines.length, text };
        });
        const out = [...lines];
        for (const { pos, text } of placed.sort((x, y) => y.pos - x.pos)) out.splice(pos, 0, text);
        const got = await extractBundleFromConsole(out.join('\n'), { run: asked ? run : undefined });
        // Without a run asked for, the newest header's run is the one read.
        const newest = out.filter((l) => /^FBXEN1 BEGIN \S+ \S+ [1-9][0-9]{0,8} [0-9a-f]{64}$/.test(l)).at(-1)!.split(' ')[2];
        if (!asked && newest !== run) {
          expect(got).toMatchObject({ run: newest });
          expect(got.status).not.toBe('complete');
          return;
        }
        expect(got).toMatchObject({ status: 'complete', run, phase: bundle.meta.phase });
        if (got.status === 'complete' && clean.status === 'complete') sameBundle(clean.bundle, got.bundle);
      }),
      { numRuns: 80 },
    );
  });

  it('fed in pieces (as fbxen boot reads the growing log), the reader finds what it finds in the whole log', async () => {
    await fc.assert(
      fc.asyncProperty(
        bundleArb,
        fc.array(fc.tuple(fc.nat(), noiseLine), { maxLength: 10 }),
        fc.array(fc.nat(), { maxLength: 6 }),
        fc.array(fc.integer({ min: 1, max: 400 }), { minLength: 1, maxLength: 40 }),
        fc.boolean(),
        async (bundle, noise, losses, cuts, trailingNewline) => {
          const run = bundle.meta.run!;
          const lines = encodeConsoleFrame(await packBundle(bundle), run, bundle.meta.phase!).trimEnd().split('\n');
          for (const l of losses) lines.splice(l % lines.length, 1);
          for (const [at, n] of noise) lines.splice(at % (lines.length + 1), 0, n);
          const text = lines.join('\r\n') + (trailingNewline ? '\r\n' : '');
          const whole = await extractBundleFromConsole(text, { run });
          const reader = new ConsoleFrameReader(run);
          let at = 0;
          for (let k = 0; at < text.length; k++) {
            const len = cuts[k % cuts.length]!;
            reader.push(text.slice(at, at + len));
            at += len;
          }
          reader.end();
          const pieces = await reader.result();
          expect(pieces).toEqual(whole);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('a frame line at the end of a console line longer than MAX_LINE_CHARS is still read, whole or in pieces', async () => {
    const bundle: Bundle = { meta: { bundle: 'fbxen-bundle/1', run: 'r1', phase: 'boot' }, index: [], sections: new Map([['x', 'y']]) };
    const lines = encodeConsoleFrame(await packBundle(bundle), 'r1', 'boot').trimEnd().split('\n');
    const per = lines.length / 2;
    // Copy 1 loses its data line 1, copy 2's lands after a run-on kernel line of 3 x MAX_LINE_CHARS.
    lines.splice(1, 1);
    lines[per] = `${'k'.repeat(3 * MAX_LINE_CHARS)}${lines[per]!}`;
    const text = lines.join('\n');
    expect((await extractBundleFromConsole(text, { run: 'r1' })).status).toBe('complete');
    const reader = new ConsoleFrameReader('r1');
    for (let at = 0; at < text.length; at += 1000) reader.push(text.slice(at, at + 1000));
    reader.end();
    expect((await reader.result()).status).toBe('complete');
  });

  it('arbitrary text never throws and never yields a bundle', async () => {
    await fc.assert(
      fc.asyncProperty(fc.string({ maxLength: 4000 }), fc.option(token, { nil: undefined }), async (text, run) => {
        const got = await extractBundleFromConsole(text, { run });
        expect(got.status).not.toBe('complete');
      }),
      { numRuns: 300 },
    );
  });
});
