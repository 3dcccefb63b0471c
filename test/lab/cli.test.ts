/** The lab commands as a user runs them (dist/cli.js), with no lab running: no VM is started here. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { fbxen } from '../support/cli.js';

describe('fbxen lab without a running lab', () => {
  it('status says not running and how to start one; --json says running: false', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-cli-'));
    const human = fbxen(['lab', 'status', '--dir', dir]);
    expect(human.code).toBe(0);
    expect(human.stdout).toBe(`lab: not running in ${dir}\nstart it with: fbxen lab up\n`);
    const json = fbxen(['--json', 'lab', 'status', '--dir', dir]);
    expect(JSON.parse(json.stdout)).toMatchObject({ running: false, ready: false, dir, pid: null, ssh: null });
  });

  it('ssh fails with exit 4, naming the lab directory and `fbxen lab up`', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-cli-'));
    const r = fbxen(['lab', 'ssh', '--dir', dir, '--', 'xl', 'info']);
    expect(r.code).toBe(4);
    expect(r.stderr).toContain(`no lab runs in ${dir}`);
    expect(r.stderr).toContain('fbxen lab up');
  });

  it('down with nothing running exits 0 and says so', () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-cli-'));
    const r = fbxen(['lab', 'down', '--dir', dir]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('no lab was running');
  });

  it("the config file's lab: section: up's keys do not break status; an unknown key is reported (exit 3)", () => {
    const cwd = mkdtempSync(join(tmpdir(), 'lab-cli-'));
    const dir = join(cwd, 'labdir');
    writeFileSync(join(cwd, 'fbxen.yaml'), `lab:\n  dir: ${dir}\n  accel: tcg\n  memory: 4096\n`);
    const ok = fbxen(['--json', 'lab', 'status'], { cwd });
    expect(ok.stderr).toBe('');
    expect(JSON.parse(ok.stdout)).toMatchObject({ running: false, dir });
    writeFileSync(join(cwd, 'fbxen.yaml'), 'lab:\n  acel: tcg\n');
    const bad = fbxen(['lab', 'status'], { cwd });
    expect(bad.code).toBe(3);
    expect(bad.stderr).toContain('lab.acel (config file): unknown option');
  });

  it('refuses a lab directory QEMU cannot take (a comma), exit 2, naming --dir', () => {
    const r = fbxen(['lab', 'status', '--dir', join(tmpdir(), 'a,b')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/space or a comma/);
    expect(r.stderr).toMatch(/--dir/);
  });
});
