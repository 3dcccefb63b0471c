import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import { parseLabState, readLabState, readTail, STATE_MAX_BYTES, writeLabState, type LabStateT } from '../../src/core/lab/state.js';

const good: LabStateT = {
  version: 1,
  pid: 4242,
  port: 40022,
  accel: 'tcg',
  dir: '/lab',
  imageKey: 'a'.repeat(64),
  identityFile: '/lab/images/aaaa/id_ed25519',
  knownHostsFile: '/lab/known_hosts',
  serialLog: '/lab/serial.log',
  startedAt: '2026-12-06T10:00:00.000Z',
  readyAt: '2026-12-06T10:00:40.000Z',
};

describe('the lab state file, read as hostile input', () => {
  it('round-trips what fbxen writes', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'lab-state-')), 'state.json');
    await writeLabState(path, good);
    expect(await readLabState(path)).toEqual(good);
  });

  it('is absent when there is no file', async () => {
    expect(await readLabState(join(mkdtempSync(join(tmpdir(), 'lab-state-')), 'state.json'))).toBeUndefined();
  });

  it.each([
    ['not JSON', '{"version":1,', /not JSON/],
    ['an array', '[]', /not valid/],
    ['pid 1 (init)', JSON.stringify({ ...good, pid: 1 }), /pid/],
    ['a negative pid', JSON.stringify({ ...good, pid: -5 }), /pid/],
    ['a fractional port', JSON.stringify({ ...good, port: 22.5 }), /port/],
    ['port 0', JSON.stringify({ ...good, port: 0 }), /port/],
    ['a relative identity path', JSON.stringify({ ...good, identityFile: 'id_ed25519' }), /identityFile/],
    ['a NUL in a path', JSON.stringify({ ...good, serialLog: '/lab/a\0b' }), /serialLog/],
    ['an unknown accel', JSON.stringify({ ...good, accel: 'hvf' }), /accel/],
    ['an unknown key', JSON.stringify({ ...good, command: 'rm -rf /' }), /command/],
    ['a short image key', JSON.stringify({ ...good, imageKey: 'abc' }), /imageKey/],
    ['another version', JSON.stringify({ ...good, version: 2 }), /version/],
  ])('rejects %s with the file named and the fix', (_what, text, detail) => {
    let err: unknown;
    try {
      parseLabState(text, '/lab/state.json');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InputError);
    expect(String((err as Error).message)).toContain('/lab/state.json');
    expect(String((err as Error).message)).toMatch(detail);
    expect((err as InputError).hint).toContain('fbxen lab down');
  });

  it('does not read a file past its bound (a 5 MB file is refused as too large)', async () => {
    const path = join(mkdtempSync(join(tmpdir(), 'lab-state-')), 'state.json');
    writeFileSync(path, `${JSON.stringify(good)}${' '.repeat(5_000_000)}`);
    await expect(readLabState(path)).rejects.toThrow(new RegExp(`over ${STATE_MAX_BYTES} bytes`));
  });

  it('property: any text is a valid state or an InputError, nothing else', () => {
    const arb = fc.oneof(
      fc.string(),
      fc.json(),
      fc.record({ version: fc.constantFrom(1, 2), pid: fc.integer(), port: fc.integer(), accel: fc.constantFrom('kvm', 'tcg', 'x'), dir: fc.string() }).map((o) => JSON.stringify({ ...good, ...o })),
    );
    fc.assert(
      fc.property(arb, (text) => {
        try {
          const s = parseLabState(text, '/lab/state.json');
          expect(s.pid).toBeGreaterThanOrEqual(2);
          expect(s.port).toBeGreaterThanOrEqual(1);
        } catch (e) {
          expect(e).toBeInstanceOf(InputError);
        }
      }),
      { numRuns: 1000 },
    );
  });
});

describe('the serial log tail', () => {
  it('reads only the last bytes, and nothing for a missing file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'lab-tail-'));
    writeFileSync(join(dir, 'serial.log'), `${'a'.repeat(100_000)}\nlast line\n`);
    expect(await readTail(join(dir, 'serial.log'), 20)).toBe('aaaaaaaaa\nlast line\n');
    expect(await readTail(join(dir, 'none.log'), 20)).toBe('');
  });
});
