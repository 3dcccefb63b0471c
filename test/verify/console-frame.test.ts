/** Console framing: specific damage cases the property tests may not hit. */
import { describe, expect, it } from 'vitest';
import { encodeConsoleFrame, extractBundleFromConsole, packBundle, type Bundle } from '../../src/core/verify/index.js';

const bundle = (run: string, phase: string, extra = ''): Bundle => ({
  meta: { bundle: 'fbxen-bundle/1', run, phase },
  index: [{ name: 'uname', status: 0, command: 'uname -a' }],
  sections: new Map([['uname', `FreeBSD g 14.1-RELEASE FreeBSD 14.1-RELEASE GENERIC amd64\n${extra}${'x'.repeat(3000)}`]]),
});
const frameLines = async (run: string, phase: string, extra = '') => encodeConsoleFrame(await packBundle(bundle(run, phase, extra)), run, phase).trimEnd().split('\n');

describe('extractBundleFromConsole', () => {
  it('absent: no frame, or only frames of other runs', async () => {
    expect(await extractBundleFromConsole('login:\n', {})).toEqual({ status: 'absent' });
    const other = (await frameLines('r-other', 'boot')).join('\n');
    expect(await extractBundleFromConsole(other, { run: 'r-mine' })).toEqual({ status: 'absent' });
  });

  it('the BEGIN line of the first copy lost: the data lines before the second BEGIN still count', async () => {
    const lines = await frameLines('r1', 'boot');
    const per = lines.length / 2;
    // lose the first BEGIN and data line 3 of the second copy
    const damaged = lines.filter((_l, i) => i !== 0 && i !== per + 3);
    expect((await extractBundleFromConsole(damaged.join('\n'), { run: 'r1' })).status).toBe('complete');
  });

  it('every BEGIN lost: incomplete, with what can be counted', async () => {
    const lines = await frameLines('r1', 'boot');
    const per = lines.length / 2;
    const got = await extractBundleFromConsole(lines.filter((_l, i) => i !== 0 && i !== per).join('\n'), { run: 'r1' });
    expect(got).toMatchObject({ status: 'incomplete', run: 'r1', phase: 'boot' });
  });

  it('a kernel message glued before a frame line does not lose it; one inside it does', async () => {
    const lines = await frameLines('r1', 'boot');
    const per = lines.length / 2;
    const glued = lines.map((l, i) => (i === 2 ? `xn0: link state changed to UP${l}` : l));
    expect((await extractBundleFromConsole(glued.slice(0, per).join('\n'), { run: 'r1' })).status).toBe('complete');
    const inside = lines.map((l, i) => (i === 2 || i === per + 2 ? `${l.slice(0, 30)}[kernel]${l.slice(30)}` : l));
    expect(await extractBundleFromConsole(inside.join('\n'), { run: 'r1' })).toMatchObject({ status: 'incomplete', missingLines: 1 });
  });

  it('phases of one run: the asked phase, or the newest', async () => {
    const pre = (await frameLines('r1', 'pre-migrate', 'A')).join('\n');
    const post = (await frameLines('r1', 'post-migrate-1', 'B')).join('\n');
    const log = `${pre}\n${post}\n`;
    const newest = await extractBundleFromConsole(log, { run: 'r1' });
    expect(newest).toMatchObject({ status: 'complete', phase: 'post-migrate-1' });
    const asked = await extractBundleFromConsole(log, { run: 'r1', phase: 'pre-migrate' });
    expect(asked).toMatchObject({ status: 'complete', phase: 'pre-migrate' });
    if (asked.status === 'complete') expect(asked.bundle.sections.get('uname')).toContain('\nA');
  });

  it('a newer incomplete frame does not hide an older complete one of the same run', async () => {
    const old = await frameLines('r1', 'boot', 'old');
    const fresh = (await frameLines('r1', 'boot', 'new')).filter((l) => !/^FBXEN1 D r1 2 /.test(l));
    const got = await extractBundleFromConsole([...old, ...fresh].join('\n'), { run: 'r1' });
    expect(got.status).toBe('complete');
    if (got.status === 'complete') expect(got.bundle.sections.get('uname')).toContain('old');
  });
});
