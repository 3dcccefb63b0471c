/**
 * Start-up cost, asserted by what is loaded (deterministic), not by time (bench/startup.mjs measures
 * that): `fbxen --help` and `fbxen build --help` load commander and a handful of fbxen's modules, and
 * none of the heavy dependencies (execa, zod, yaml, listr2) nor any command's flow. Before the
 * commands loaded their flow on demand, --help loaded 87 of fbxen's modules and 25 packages (counted
 * with this hook at d41535e~1), about 410 files.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CLI, ensureBuilt } from '../support/cli.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-cli-startup-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function loaded(args: string[]): { code: number | null; fbxen: string[]; packages: string[] } {
  ensureBuilt();
  const log = join(dir, `modules-${args.join('_').replace(/[^A-Za-z0-9_-]/g, '')}.log`);
  const r = spawnSync(process.execPath, ['--import', join(import.meta.dirname, 'module-log.mjs'), CLI, ...args], { cwd: dir, env: { ...process.env, FBXEN_MODULE_LOG: log }, encoding: 'utf8' });
  const urls = [...new Set(readFileSync(log, 'utf8').trim().split('\n'))].filter((u) => !u.endsWith('/module-log-hooks.mjs') && !u.endsWith('/module-log.mjs'));
  const packages = [...new Set(urls.map((u) => /\/node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(u)?.[1]).filter((p): p is string => p !== undefined))].sort();
  const fbxen = urls.filter((u) => u.includes('/dist/')).map((u) => u.slice(u.indexOf('/dist/') + 6)).sort();
  return { code: r.status, fbxen, packages };
}

describe('start-up loads only what the help needs', () => {
  it.each([[['--help']], [['build', '--help']], [['migrate-test', '--help']]])('fbxen %s', (args) => {
    const r = loaded(args);
    expect(r.code).toBe(0);
    expect(r.packages).toEqual(['commander']);
    // cli, program, the command registry and its defaults, errors, progress, cleanup, print-error
    expect(r.fbxen.length).toBeLessThanOrEqual(8);
    expect(r.fbxen.filter((m) => m.startsWith('core/imaging') || m.startsWith('core/verify') || m.startsWith('probes/'))).toEqual([]);
  });

  it('a command that runs loads its flow (the count above is not the hook missing modules)', () => {
    const r = loaded(['verify', '--bundle', join(dir, 'nope')]);
    expect(r.fbxen).toContain('core/verify/verify.js');
    expect(r.packages).toContain('zod');
  });
});
