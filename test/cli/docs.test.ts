/**
 * docs/cli.md in step with the program: every option of every command (as `--help` shows it, read from
 * the commander program itself) is in the command's table, and the tables list no option that does not
 * exist. Also: the defaults the help text shows (copies kept in src/commands/defaults.ts so that
 * `--help` loads no core module) equal their sources.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import * as defaults from '../../src/commands/defaults.js';
import { DEFAULT_ARTIFACTS_ROOT } from '../../src/core/run/artifacts.js';
import { FORMAT_NAMES } from '../../src/core/imaging/formats.js';
import { DEFAULT_MIRROR } from '../../src/core/imaging/sets.js';
import { XZ_DECODERS } from '../../src/core/imaging/xz-decoder.js';
import { probeIds } from '../../src/probes/index.js';
import { createProgram } from '../../src/program.js';

const DOC = readFileSync(join(import.meta.dirname, '../../docs/cli.md'), 'utf8');

/** The option flags of each table, by section title ("Global options", "fbxen build", ...). */
function documented(): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const line of DOC.split('\n')) {
    const h = /^## (.+)$/.exec(line);
    if (h) {
      section = h[1]!;
      continue;
    }
    const row = /^\| `((?:-[A-Za-z], )?--[a-z0-9-]+)/.exec(line);
    if (row) out.set(section, [...(out.get(section) ?? []), row[1]!.replace(/^-[A-Za-z], /, '')]);
  }
  return out;
}

/** Every command that runs (leaves and `config xl`), with the long names of its options. */
function programOptions(): Map<string, string[]> {
  const program = createProgram(() => {
    throw new Error('no command runs here');
  });
  const out = new Map<string, string[]>([['Global options', program.options.map((o) => o.long!).filter((l) => l !== '--help')]]);
  const walk = (cmd: Command, prefix: string) => {
    for (const sub of cmd.commands) {
      const name = `${prefix} ${sub.name()}`;
      if (sub.commands.length) walk(sub, name);
      else out.set(name, sub.options.map((o) => o.long!));
    }
  };
  walk(program, 'fbxen');
  return out;
}

describe('docs/cli.md lists exactly the options the program has', () => {
  const docs = documented();
  const program = programOptions();

  it('has a table for every command', () => {
    expect([...docs.keys()].sort()).toEqual([...program.keys()].sort());
  });

  for (const [section, flags] of programOptions()) {
    it(`${section}: every option is documented, and no other`, () => {
      const listed = docs.get(section) ?? [];
      expect(flags.filter((f) => !listed.includes(f)), 'options missing from docs/cli.md').toEqual([]);
      expect(listed.filter((f) => !flags.includes(f)), 'options in docs/cli.md that do not exist').toEqual([]);
      expect(new Set(listed).size, 'an option listed twice').toBe(listed.length);
    });
  }

  it('the README names only options that exist', () => {
    const text = readFileSync(join(import.meta.dirname, '../../README.md'), 'utf8');
    // From "## Commands" on: the quick start also shows the sample generator's own options.
    const readme = text.slice(text.indexOf('\n## Commands'));
    const all = new Set([...program.values()].flat());
    const named = [...readme.matchAll(/(?<![\w-])--[a-z][a-z0-9-]+/g)].map((m) => m[0]);
    expect(named.filter((f) => !all.has(f) && f !== '--help')).toEqual([]);
  });
});

describe('the help text defaults equal their sources', () => {
  it('mirror, formats, xz decoders, artifacts root, probe ids', () => {
    expect(defaults.DEFAULT_MIRROR).toBe(DEFAULT_MIRROR);
    expect(defaults.FORMAT_NAMES).toEqual(FORMAT_NAMES);
    expect(defaults.XZ_DECODERS).toEqual(XZ_DECODERS);
    expect(defaults.DEFAULT_ARTIFACTS_ROOT).toBe(DEFAULT_ARTIFACTS_ROOT);
    expect(defaults.PROBE_IDS).toEqual(probeIds);
  });
});
