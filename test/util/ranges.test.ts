import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dataTester } from '../../src/core/util/ranges.js';

describe('dataTester', () => {
  it('answers like a scan of every range, for any ranges and ascending queries (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.nat(1000), fc.integer({ min: 1, max: 200 })), { maxLength: 12 }),
        fc.array(fc.tuple(fc.nat(1200), fc.integer({ min: 1, max: 150 })), { maxLength: 30 }),
        (spans, queries) => {
          const ranges = spans.map(([s, l]) => [s, s + l] as const);
          const test = dataTester(ranges);
          for (const [start, length] of [...queries].sort((a, b) => a[0] - b[0])) {
            const expected = ranges.some(([s, e]) => s < start + length && e > start);
            expect(test(start, start + length)).toBe(expected);
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('says every span may hold data when there are no ranges, and none when the list is empty', () => {
    expect(dataTester(undefined)(0, 1)).toBe(true);
    expect(dataTester([])(0, 1 << 30)).toBe(false);
    expect(dataTester([[10, 20]])(20, 30)).toBe(false); // [start, end): 20 is past the range
  });
});
