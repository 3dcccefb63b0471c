/**
 * The config file: a misspelt section is refused (it was ignored, so its options silently did not
 * apply), its shape errors are in the user's words, and flags win over it for every key: a property
 * test of the merge over arbitrary option maps and exclusive groups.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { mergeOverConfig } from '../../src/commands/options.js';
import { fbxen } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-cli-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const config = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};

describe('the config file is checked before it is used', () => {
  it('an unknown section (a typo) is refused, naming it and the sections there are: exit 3', () => {
    const r = fbxen(['--config', config('typo.yaml', 'biuld:\n  release: 14.3-RELEASE\n'), 'build', '--dist', join(dir, 'nowhere'), '--dry-run'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("biuld (config file): unknown section; the sections are build, boot, verify, migrate-test");
    expect(r.stdout).toBe('');
  });

  it('a section that is no map says so in words, not zod types', () => {
    const r = fbxen(['--config', config('scalar.yaml', 'build: 5\n'), 'build', '--dist', 'x'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('build (config file): must map option names to values, not 5');
    expect(r.stderr).not.toMatch(/Invalid input|expected record/);
  });

  it('a file that is no map of sections says so', () => {
    const r = fbxen(['--config', config('list.yaml', '- 1\n- 2\n'), 'build', '--dist', 'x'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('must map command names (build, boot, verify, migrate-test, lab) to option maps');
    expect(r.stderr).not.toMatch(/Invalid input|expected record/);
  });

  it('--json: a config error is one JSON document with class ConfigError and exit 3', () => {
    const r = fbxen(['--json', '--config', config('typo2.yaml', 'veryfy:\n  bundle: x\n'), 'verify', '--bundle', 'x'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(JSON.parse(r.stdout)).toMatchObject({ error: { class: 'ConfigError', exitCode: 3 } });
  });
});

describe('flags win over the config file (property)', () => {
  const key = fc.constantFrom('release', 'dist', 'arch', 'diskSize', 'iso', 'emptyCdrom', 'ssh', 'identity', 'domain', 'format');
  const value = fc.oneof(fc.string(), fc.integer(), fc.boolean());
  const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const groups = [
    [['release'], ['dist']],
    [['iso'], ['emptyCdrom']],
    [['ssh', 'identity'], ['domain']],
  ] as const;

  it('every flag given is the value used; a config key survives unless a flag names it or a rival group', () => {
    fc.assert(
      fc.property(fc.dictionary(key, value), fc.dictionary(key, value), (fromFile, flags) => {
        const section = Object.fromEntries(Object.entries(fromFile).map(([k, v]) => [kebab(k), v]));
        const { merged, fromConfig } = mergeOverConfig(section, flags, groups);
        for (const [k, v] of Object.entries(flags)) expect(merged[k]).toBe(v);
        for (const [k, v] of Object.entries(fromFile)) {
          if (k in flags) continue;
          const rivalled = groups.some((gs) => {
            const mine = gs.find((g) => (g as readonly string[]).includes(k));
            return mine !== undefined && gs.some((g) => g !== mine && g.some((m) => m in flags)) && !mine.some((m) => m in flags);
          });
          if (rivalled) expect(k in merged).toBe(false);
          else {
            expect(merged[k]).toBe(v);
            expect(fromConfig.has(k)).toBe(true);
          }
        }
      }),
      { numRuns: 500 },
    );
  });
});
