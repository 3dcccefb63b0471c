/**
 * The import-graph rules (.dependency-cruiser.cjs, docs/architecture.md) fire on what they forbid and on
 * nothing else: dependency-cruiser runs with the project's config over a small tree made here, seeded with
 * one violation per rule beside imports the layers allow. (`npm run lint:deps` runs it over src/ in CI.)
 * Also: no dynamic import by a computed path in src/, which neither tsc nor dependency-cruiser can follow.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../..');
const dir = mkdtempSync(join(tmpdir(), 'fbxen-import-graph-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Violation {
  rule: { name: string };
  from: string;
  to: string;
}

/** Writes the files (path -> the modules it imports, './x.js' style relative to src/) and cruises them. */
function cruise(name: string, files: Record<string, string[]>): Violation[] {
  const root = join(dir, name);
  for (const [path, imports] of Object.entries(files)) {
    const file = join(root, 'src', path);
    mkdirSync(dirname(file), { recursive: true });
    const lines = imports.map((target, i) => {
      const rel = relative(path, target);
      // The first import of a module is type-only where asked (`type:` prefix): those count too.
      return target.startsWith('type:') ? `import type { T${i} } from '${relative(path, target.slice(5))}';` : `import { v${i} } from '${rel}';`;
    });
    writeFileSync(file, `${lines.join('\n')}\nexport const v0 = 0, v1 = 1, v2 = 2, v3 = 3;\nexport type T0 = 0;\nexport type T1 = 1;\n`);
  }
  writeFileSync(join(root, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', strict: true }, include: ['src'] }));
  const r = spawnSync(process.execPath, [join(REPO, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs'), 'src', '--config', join(REPO, '.dependency-cruiser.cjs'), '--output-type', 'json'], {
    cwd: root,
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (!r.stdout) throw new Error(`dependency-cruiser gave no output (exit ${r.status}): ${r.stderr}`);
  const out = JSON.parse(r.stdout) as { summary: { violations: Violation[]; totalCruised: number } };
  expect(out.summary.totalCruised).toBeGreaterThanOrEqual(Object.keys(files).length);
  return out.summary.violations;
}

function relative(from: string, to: string): string {
  const up = from.split('/').length - 1;
  const target = to.replace(/\.ts$/, '.js');
  return up === 0 ? `./${target}` : `${'../'.repeat(up)}${target}`;
}

const pairs = (vs: Violation[]) => vs.map((v) => `${v.rule.name}: ${v.from.replace(/^src\//, '')} -> ${v.to.replace(/^src\//, '')}`).sort();

describe('import-graph rules', () => {
  it('allow the layers downward: entry -> command -> flow -> driver -> util, helpers shared by commands', () => {
    const v = cruise('clean', {
      'cli.ts': ['program.ts', 'ui/tasks.ts'],
      'program.ts': ['commands/index.ts'],
      'commands/index.ts': ['commands/boot.ts', 'commands/config.ts'],
      'commands/boot.ts': ['commands/options.ts', 'commands/boot-options.ts', 'core/boot/flow.ts'],
      'commands/config.ts': ['commands/boot-options.ts', 'core/boot/flow.ts'],
      'commands/options.ts': [],
      'commands/boot-options.ts': ['commands/options.ts'],
      'ui/tasks.ts': ['core/progress.ts'],
      'core/boot/flow.ts': ['core/verify/verify.ts', 'core/toolstack/xl/driver.ts', 'core/run/artifacts.ts'],
      'core/verify/verify.ts': ['probes/types.ts', 'core/run/artifacts.ts'],
      'probes/types.ts': [],
      'core/toolstack/xl/driver.ts': ['core/errors.ts', 'core/util/sleep.ts'],
      'core/run/artifacts.ts': ['core/errors.ts', 'core/util/sleep.ts'],
      'core/progress.ts': [],
      'core/errors.ts': [],
      'core/util/sleep.ts': [],
    });
    expect(pairs(v)).toEqual([]);
  });

  it('report each forbidden import, type-only ones included', () => {
    const v = cruise('seeded', {
      'commands/index.ts': ['commands/boot.ts', 'commands/config.ts'],
      // a command importing another command, and a command reaching a driver past the flows
      'commands/config.ts': ['commands/boot.ts'],
      'commands/boot.ts': ['core/toolstack/xapi/client.ts'],
      // a driver importing a flow (upward) and the other driver
      'core/toolstack/xl/driver.ts': ['type:core/boot/flow.ts', 'core/toolstack/xapi/client.ts'],
      'core/toolstack/xapi/client.ts': [],
      'core/boot/flow.ts': [],
      // the verify flow importing the boot flow (upward among flows), probes importing core/verify
      'core/verify/verify.ts': ['core/boot/flow.ts'],
      'probes/types.ts': ['type:core/verify/verify.ts'],
      // util importing fbxen code
      'core/util/sleep.ts': ['core/errors.ts'],
      'core/errors.ts': [],
      // a cycle made of a type-only import one way
      'core/run/a.ts': ['core/run/b.ts'],
      'core/run/b.ts': ['type:core/run/a.ts'],
    });
    // The cycle is reported once, from either of its modules.
    const cycles = pairs(v).filter((p) => p.startsWith('no-cycle:'));
    expect(cycles).toHaveLength(1);
    expect(cycles[0]).toMatch(/^no-cycle: core\/run\/(a\.ts -> core\/run\/b|b\.ts -> core\/run\/a)\.ts$/);
    expect(pairs(v).filter((p) => !p.startsWith('no-cycle:'))).toEqual(
      [
        'commands-reach-drivers-through-flows: commands/boot.ts -> core/toolstack/xapi/client.ts',
        'no-command-imports-a-command: commands/config.ts -> commands/boot.ts',
        'no-upward-from-toolstack-drivers: core/toolstack/xl/driver.ts -> core/boot/flow.ts',
        'no-driver-imports-another-driver: core/toolstack/xl/driver.ts -> core/toolstack/xapi/client.ts',
        'no-upward-from-flow-verify: core/verify/verify.ts -> core/boot/flow.ts',
        'no-upward-from-probes: probes/types.ts -> core/verify/verify.ts',
        'util-imports-no-fbxen-module: core/util/sleep.ts -> core/errors.ts',
      ].sort(),
    );
  });
});

describe('src/ imports by literal paths only', () => {
  it('has no import() of a computed path (tsc cannot check it, dependency-cruiser cannot see it)', () => {
    const files: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d, { withFileTypes: true })) {
        if (e.isDirectory()) walk(join(d, e.name));
        else if (e.name.endsWith('.ts')) files.push(join(d, e.name));
      }
    };
    walk(join(REPO, 'src'));
    expect(files.length).toBeGreaterThan(50);
    const computed: string[] = [];
    for (const f of files) {
      readFileSync(f, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          // import('literal') and type positions import('x').T are fine; import(anything else) is not.
          for (const m of line.matchAll(/\bimport\(\s*([^)\s]?)/g)) if (m[1] !== "'" && m[1] !== '"') computed.push(`${f.slice(REPO.length + 1)}:${i + 1}: ${line.trim()}`);
        });
    }
    expect(computed).toEqual([]);
  });
});
