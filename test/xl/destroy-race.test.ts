/**
 * `xl destroy` racing another destroyer (src/core/toolstack/xl/xl-commands.ts destroy): on the lab's real
 * xl a domain that powered off was being destroyed by its own `xl create` (on_poweroff="destroy") while
 * fbxen destroyed it too, and fbxen's destroy failed with libxl's words, making a clean boot exit 5. A
 * stand-in xl (a shell script) prints those words; whether the domain is still listed decides.
 */
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CommandFailedError, createExecaRunner } from '../../src/core/exec/runner.js';
import { XlCommands } from '../../src/core/toolstack/xl/xl-commands.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-destroy-race-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** What the real xl 4.17 printed in the lab when its destroy raced the on_poweroff destroy (exit 1). */
const RACE_WORDS = [
  'libxl: error: libxl_domain.c:1530:devices_destroy_cb: Domain 7:libxl__devices_destroy failed',
  'libxl: error: libxl_dom.c:1216:libxl__userdata_path: unable to find domain info for domain 7: No such file or directory',
  'libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain 7:Unable to destroy guest',
  'libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain 7:Destruction of domain failed',
];

/** A stand-in xl: `destroy` fails with the race's words; `list` shows domain 7 while FILE exists. */
function standInXl(listedWhile: string, goneAfterDestroy: boolean): string {
  const xl = join(dir, `xl-${goneAfterDestroy ? 'gone' : 'stays'}`);
  writeFileSync(xl, [
    '#!/bin/sh',
    'case $1 in',
    `destroy) ${goneAfterDestroy ? `rm -f '${listedWhile}'; ` : ''}printf '%s\\n' ${RACE_WORDS.map((w) => `'${w}'`).join(' ')} >&2; exit 1 ;;`,
    `list) printf 'Name                                        ID   Mem VCPUs\\tState\\tTime(s)\\nDomain-0                                     0  2048     2     r-----      10.0\\n'; [ -e '${listedWhile}' ] && printf 'fbxen-v                                      7   256     1     --ps-d       1.0\\n'; exit 0 ;;`,
    'esac',
    'exit 2',
    '',
  ].join('\n'));
  chmodSync(xl, 0o755);
  return xl;
}

describe('xl destroy racing the domain\'s own on_poweroff destroy', () => {
  it('the destroy fails with libxl\'s words but the domain is gone from xl list: destroyed, no error', async () => {
    const marker = join(dir, 'listed-1');
    writeFileSync(marker, '');
    const xl = new XlCommands(createExecaRunner(), { xl: standInXl(marker, true) });
    await expect(xl.destroy(7)).resolves.toBeUndefined();
    expect(existsSync(marker)).toBe(false);
  });

  it('the destroy fails and the domain stays listed: the error with xl\'s words, after the bounded look (5 x 1 s)', async () => {
    const marker = join(dir, 'listed-2');
    writeFileSync(marker, '');
    const xl = new XlCommands(createExecaRunner(), { xl: standInXl(marker, false) });
    const t = Date.now();
    const err = await xl.destroy(7).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandFailedError);
    expect((err as Error).message).toContain('Unable to destroy guest');
    expect(Date.now() - t).toBeGreaterThanOrEqual(4000);
  }, 60_000);
});
