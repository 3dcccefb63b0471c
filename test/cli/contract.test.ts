/**
 * The CLI contract as a user meets it (dist/cli.js spawned): one exit code per class of failure as the
 * README's table says, the error printed once, messages in the user's words, "(config file)" only for
 * what came from the config file, one JSON document on stdout with --json even on failure, and flags
 * winning over the config file, also across a group of options that exclude each other.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { fbxen } from '../support/cli.js';
import { sampleDist } from '../support/samples.js';
import { FIXTURES } from '../support/verify/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-cli-contract-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const config = (name: string, text: string) => {
  const path = join(dir, name);
  writeFileSync(path, text);
  return path;
};
const count = (haystack: string, needle: string) => haystack.split(needle).length - 1;

describe('exit codes: one per class', () => {
  it.each([
    ['an unknown option', ['build', '--bogus']],
    ['an unknown command', ['nope']],
    ['a value commander refuses', ['build', '--dist', 'x', '--arch', 'sparc64']],
    ['a flag value the schema refuses', ['build', '--dist', 'x', '--format', 'foo']],
    ['a number that is none', ['boot', '--image', 'x.raw', '--vcpus', 'abc']],
    ['a missing required option', ['verify']],
    ['two options that exclude each other', ['build', '--release', '14.3-RELEASE', '--dist', 'x']],
    ['a missing option argument', ['build', '--dist']],
    ['an option that only goes with another', ['build', '--release', '14.3-RELEASE', '--release-name', '14.3-RELEASE']],
  ])('%s is a usage error: exit 2', (_what, args) => {
    const r = fbxen(args, { cwd: dir });
    expect(r.stderr).toMatch(/^fbxen: error: /m);
    expect(r.code).toBe(2);
  });

  it('a bad value in the config file is invalid configuration: exit 3, named as the config key', () => {
    const cfg = config('bad-format.yaml', 'build:\n  dist: x\n  format: foo\n');
    const r = fbxen(['--config', cfg, 'build'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain("build.format (config file): 'foo' is not one of raw, qcow2, vhd, xva");
  });

  it('an unreadable config file is invalid configuration: exit 3', () => {
    const r = fbxen(['--config', join(dir, 'missing.yaml'), 'build'], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('cannot read config file');
  });
});

describe('the error is printed once, in the user words', () => {
  it("commander's own line does not repeat fbxen's", () => {
    const r = fbxen(['build', '--bogus'], { cwd: dir });
    expect(count(r.stderr, "unknown option '--bogus'")).toBe(1);
    expect(r.stderr).toMatch(/hint: .*fbxen build --help/);
  });

  it('a step that fails does not repeat the error in its progress line', () => {
    const r = fbxen(['verify', '--bundle', join(dir, 'no-such-bundle')], { cwd: dir });
    expect(r.code).toBe(3);
    expect(r.stderr).toMatch(/read evidence/); // the step's line is there
    expect(count(r.stderr, 'does not exist or cannot be read')).toBe(1);
  });

  it('an enum names the value and what is accepted, not the zod path', () => {
    const r = fbxen(['build', '--dist', 'x', '--format', 'raw,foo'], { cwd: dir });
    expect(r.stderr).toContain("--format: 'foo' is not one of raw, qcow2, vhd, xva");
    expect(r.stderr).not.toMatch(/--format\.\d|Invalid option/);
  });

  it('a number that is none says so, without NaN', () => {
    const r = fbxen(['boot', '--image', 'x.raw', '--vcpus', 'abc'], { cwd: dir });
    expect(r.stderr).toContain("--vcpus: 'abc' is not a number");
    expect(r.stderr).not.toMatch(/NaN|Invalid input/);
  });

  it('a number out of range names the bound', () => {
    const r = fbxen(['boot', '--image', 'x.raw', '--vcpus', '0'], { cwd: dir });
    expect(r.stderr).toContain('--vcpus: 0 is too small (at least 1)');
  });

  it('"(config file)" only when the value came from a config file', () => {
    const r = fbxen(['verify'], { cwd: dir });
    expect(r.stderr).toContain('give exactly one of --bundle, --console-log, --ssh, --domain');
    expect(r.stderr).not.toContain('config file');
    const b = fbxen(['boot'], { cwd: dir });
    expect(b.stderr).toContain('--image: required');
    expect(b.stderr).not.toContain('config file');
  });
});

describe('--json on failure: one JSON document on stdout', () => {
  it.each([
    ['usage', ['--json', 'build', '--bogus'], 'UsageError', 2],
    ['config', ['--json', 'build', '--dist', 'x', '--format', 'foo'], 'UsageError', 2],
    ['input', ['--json', 'verify', '--bundle', '/nonexistent/bundle'], undefined, undefined],
  ])('%s', (_what, args, cls, code) => {
    const r = fbxen(args as string[], { cwd: dir });
    const doc = JSON.parse(r.stdout) as { error: { class: string; message: string; hint: string | null; exitCode: number } };
    expect(doc.error.exitCode).toBe(r.code);
    if (code !== undefined) expect(r.code).toBe(code);
    if (cls !== undefined) expect(doc.error.class).toBe(cls);
    expect(doc.error.message.length).toBeGreaterThan(0);
    expect(doc.error).toHaveProperty('hint');
    // stderr keeps the human error for a person watching the job
    expect(r.stderr).toContain(doc.error.message.split('\n')[0]);
  });

  it('a verdict document stays the one document when the check says no', () => {
    const r = fbxen(['--json', '--quiet', 'verify', '--bundle', join(FIXTURES, '13.2-legacy-callback-derived')], { cwd: dir });
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.stdout) as { results: unknown[] };
    expect(doc.results.length).toBeGreaterThan(0);
  });
});

describe('flags win over the config file', () => {
  it('--dist against a config release (one member of an exclusive group overrides the other)', () => {
    const cfg = config('release.yaml', 'build:\n  release: 14.3-RELEASE\n  mirror: http://127.0.0.1:9\n');
    const dist = sampleDist();
    const r = fbxen(['--config', cfg, 'build', '--dist', dist, '--out', join(dir, 'o'), '--dry-run'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(dist);
  });

  it('--bundle against a config domain, for verify', () => {
    const cfg = config('verify.yaml', 'verify:\n  domain: some-vm\n');
    const r = fbxen(['--config', cfg, '--quiet', 'verify', '--bundle', join(FIXTURES, '13.2-healthy-derived')], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('PASS');
  });

  it('--empty-cdrom against a config iso, for config xl', () => {
    const image = join(dir, 'img.raw');
    const disk = Buffer.alloc(1024 * 1024);
    disk.writeUInt16LE(0xaa55, 510); // an MBR signature: a raw disk by its content
    writeFileSync(image, disk);
    const cfg = config('boot.yaml', `boot:\n  iso: ${join(dir, 'x.iso')}\n  image: ${image}\n`);
    const r = fbxen(['--config', cfg, 'config', 'xl', '--empty-cdrom'], { cwd: dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).not.toContain('x.iso');
  });

  it('a flag given in both places takes the flag (every key goes through the same merge)', () => {
    const cfg = config('format.yaml', 'build:\n  format: vhd\n  name: from-config\n');
    const r = fbxen(['--config', cfg, 'build', '--dist', sampleDist(), '--out', join(dir, 'o2'), '--format', 'raw', '--name', 'from-flag', '--dry-run'], { cwd: dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('from-flag.raw');
    expect(r.stdout).not.toMatch(/from-config|\.vhd/);
  });
});
