import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { NAME_PATTERN, NAME_TOKEN } from '../../src/core/util/names.js';

const REPO = join(import.meta.dirname, '../..');
const ALNUM = /^[A-Za-z0-9]$/;
const INNER = /^[A-Za-z0-9._-]$/;

/** The rule spelled out character by character, independently of the regular expression. */
function isName(s: string): boolean {
  const chars = [...s];
  return chars.length >= 1 && chars.length <= 64 && s.length === chars.length && ALNUM.test(chars[0]!) && chars.every((c) => INNER.test(c));
}

describe('NAME_PATTERN', () => {
  it('accepts exactly 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit (property)', () => {
    // Mostly legal characters, with the ones that matter at the edges: separators, newline, non-ASCII.
    const char = fc.oneof(fc.constantFrom('a', 'Z', '0', '9', '.', '_', '-'), fc.constantFrom('/', ' ', '\n', ':', '@', 'é', '\u0000', '+'));
    fc.assert(
      fc.property(fc.array(char, { minLength: 0, maxLength: 70 }), fc.boolean(), (chars, trailingNewline) => {
        const s = chars.join('') + (trailingNewline ? '\n' : '');
        expect(NAME_PATTERN.test(s)).toBe(isName(s));
      }),
      { numRuns: 2000 },
    );
  });

  it('at the edges', () => {
    expect(NAME_PATTERN.test('a'.repeat(64))).toBe(true);
    expect(NAME_PATTERN.test('a'.repeat(65))).toBe(false);
    for (const bad of ['', '.', '..', '-rf', '_x', 'a b', 'a/b', 'run\n']) expect(NAME_PATTERN.test(bad), bad).toBe(false);
  });
});

describe('the name rule is written once', () => {
  it('src/ spells the character classes only in core/util/names.ts', () => {
    const found: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        const p = join(d, e.name);
        if (e.isDirectory()) walk(p);
        else if (e.name.endsWith('.ts') && readFileSync(p, 'utf8').includes(NAME_TOKEN)) found.push(p.slice(REPO.length + 1));
      }
    };
    walk(join(REPO, 'src'));
    expect(found).toEqual(['src/core/util/names.ts']);
  });
});
