/**
 * `fbxen boot --toolstack xapi` through the command layer (src/commands/boot.ts → dynamic import of the
 * XAPI driver), with --dry-run: the flags reach the driver, the plan comes back, and nothing the user
 * sees (plan, progress lines, errors) carries the password from the environment.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, it } from 'vitest';
import { BootOptions, runBoot } from '../../src/commands/boot.js';
import type { CommandContext } from '../../src/commands/context.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import type { Progress } from '../../src/core/progress.js';

const PASSWORD = 'cmd-layer-Pa55word';
const dir = mkdtempSync(join(tmpdir(), 'fbxen-xapi-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function context(seen: string[]): CommandContext {
  const progress: Progress = {
    step: (title, run) => (seen.push(title), run({ output: (l) => void seen.push(l) })),
    info: (m) => void seen.push(m),
    warn: (m) => void seen.push(m),
  };
  return {
    globals: { json: false, verbose: false, quiet: false, debug: false },
    progress,
    runner: { run: () => Promise.reject(new Error('no subprocess in a dry run')), stream: () => { throw new Error('no subprocess in a dry run'); } },
    signal: new AbortController().signal,
    cleanup: new CleanupStack(),
    configSection: () => ({}),
    result: () => undefined,
    env: { FBXEN_XAPI_URL: 'https://pool.lab', FBXEN_XAPI_USER: 'root', FBXEN_XAPI_PASSWORD: PASSWORD },
    cwd: dir,
  };
}

it('plans a XenServer boot from the command flags without leaking the password', async () => {
  const image = join(dir, 'fbsd.raw');
  const disk = Buffer.alloc(3 * 1024 * 1024);
  disk.writeUInt16LE(0xaa55, 510); // MBR boot signature: a disk, to fbxen
  writeFileSync(image, disk);
  const seen: string[] = [];
  const o = BootOptions.parse({ toolstack: 'xapi', image, dryRun: true, emptyCdrom: true, sr: 'NFS storage', network: 'Lab network', insecure: true, artifacts: join(dir, 'runs') });
  const r = await runBoot(o, context(seen));
  expect(r.toolstack).toBe('xapi');
  expect(r.name).toBe('fbxen-fbsd');
  expect(r.planText).toContain('PUT /import_raw_vdi?session_id=<session>&vdi=<VDI#');
  expect(r.planText).toContain('&format=raw&');
  expect(r.planText).toContain('TLS NOT verified (--insecure)');
  expect(r.planText).not.toContain('VBD.insert'); // --empty-cdrom
  expect(seen.join('\n')).toMatch(/rounds VDIs up to 2 MiB/); // 3 MiB disk: warned
  expect(`${r.planText}\n${seen.join('\n')}`).not.toContain(PASSWORD);
});

it('rejects a file that is no disk image, naming the fix', async () => {
  const bad = join(dir, 'notes.txt');
  writeFileSync(bad, 'not a disk');
  const o = BootOptions.parse({ toolstack: 'xapi', image: bad, dryRun: true });
  await expect(runBoot(o, context([]))).rejects.toThrow(/notes\.txt is a text file, not a disk image/);
});
