/**
 * The heartbeat's network beats: the host's listener (src/core/net/beats.ts) against hostile connections,
 * and the real guest/fbxen-heartbeat under dash (FreeBSD sysctl stand-in and the STUB nc: SIMULATION)
 * sending its beats to it.
 */
import { spawn, spawnSync } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { firstBeatAfter, startBeatListener, type BeatListener } from '../../src/core/net/beats.js';

const REPO = join(import.meta.dirname, '../..');
const HEARTBEAT = join(REPO, 'guest/fbxen-heartbeat');
/** The sysctl stand-in and the shell's tools, no stub nc. */
const noNc = { ...process.env, PATH: `${join(REPO, 'test/support/migrate/standins')}:/usr/bin:/bin` };
const ncOnPath = spawnSync('sh', ['-c', 'command -v nc'], { env: noNc }).status === 0;

/** Sends `data` on one connection and resolves when the listener has closed it. */
function send(port: number, data: string | Buffer, end = true): Promise<void> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port }, () => (end ? s.end(data) : s.write(data)));
    s.on('error', () => resolve());
    s.on('close', () => resolve());
    s.resume();
  });
}

async function settle(l: BeatListener, n: number): Promise<void> {
  for (let i = 0; i < 200 && l.beats().length + l.ignored < n; i++) await new Promise((r) => setTimeout(r, 10));
}

describe('the beat listener', () => {
  it('keeps each beat number with its arrival; anything else is counted as ignored, never kept', async () => {
    let t = 1000;
    const l = await startBeatListener({ address: '127.0.0.1', now: () => (t += 10) });
    try {
      await send(l.port, '7\n');
      await send(l.port, '8');
      for (const bad of ['x\n', '-1\n', '1 2\n', '9'.repeat(40), '', '12345678901\n', Buffer.from([0xff, 0x0a])]) await send(l.port, bad);
      await settle(l, 9);
      expect(l.beats().map((b) => b.seq)).toEqual([7, 8]);
      expect(l.beats()[0]!.peer).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(l.ignored).toBe(7);
      expect(firstBeatAfter(l.beats(), l.beats()[1]!.at)).toEqual({ ms: 0, seq: 8 });
      expect(firstBeatAfter(l.beats(), l.beats()[1]!.at + 1)).toBeNull();
    } finally {
      await l.close();
    }
  });

  it('a peer sending without end is cut at the line bound; one that never sends is ended by close()', async () => {
    const l = await startBeatListener({ address: '127.0.0.1' });
    const long = send(l.port, 'z'.repeat(1 << 20), false);
    await long;
    const silent = new Promise<void>((resolve) => {
      const s = connect({ host: '127.0.0.1', port: l.port });
      s.on('error', () => resolve());
      s.on('close', () => resolve());
    });
    await settle(l, 1);
    expect(l.ignored).toBe(1);
    await l.close();
    await silent;
    expect(l.beats()).toEqual([]);
  });

  it('firstBeatAfter: the first beat at or after the time, never one before', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 1e6 }), { maxLength: 50 }), fc.integer({ min: 0, max: 1e6 }), (times, since) => {
        const beats = [...times].sort((a, b) => a - b).map((at, i) => ({ seq: i + 1, at, peer: 'p' }));
        const got = firstBeatAfter(beats, since);
        const want = beats.find((b) => b.at >= since);
        expect(got).toEqual(want ? { ms: want.at - since, seq: want.seq } : null);
      }),
    );
  });
});

describe('guest/fbxen-heartbeat --beat-to under dash (SIMULATION: sysctl stand-in, STUB nc)', () => {
  const env = { ...process.env, PATH: `${join(REPO, 'test/support/migrate/standins')}:${join(REPO, 'test/probes/stubs')}:${process.env.PATH ?? ''}` };

  it('sends numbered beats every --beat-every-ms to the listener while the heartbeat lines go on', async () => {
    const l = await startBeatListener({ address: '127.0.0.1' });
    try {
      const child = spawn('dash', [HEARTBEAT, '--run', 'hb-beat', '--max-seconds', '3', '--period-ms', '10', '--beat-to', `127.0.0.1:${l.port}`, '--beat-every-ms', '100'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => (out += d.toString()));
      child.stderr.on('data', (d: Buffer) => (err += d.toString()));
      const code = await new Promise<number | null>((r) => child.on('close', r));
      expect(code, err).toBe(0);
      // the background nc may still be arriving: the stub's -w 2 bounds them
      for (let i = 0; i < 300 && l.beats().length === 0; i++) await new Promise((r) => setTimeout(r, 10));
      await new Promise((r) => setTimeout(r, 2500));
      const seqs = l.beats().map((b) => b.seq).sort((a, b) => a - b);
      // numbered 1, 2, ... on their own clock (one per 100 ms over the 2-3 s the heartbeat ran); each came whole
      expect(seqs.length).toBeGreaterThanOrEqual(3);
      expect(seqs.slice(0, 3)).toEqual([1, 2, 3]);
      expect(new Set(seqs).size).toBe(seqs.length);
      expect(out).toMatch(/^FBXEN1 HB hb-beat 1 /m);
      expect(l.ignored).toBe(0);
    } finally {
      await l.close();
    }
  }, 30_000);

  it('refuses a bad --beat-to or --beat-every-ms (exit 2)', () => {
    for (const bad of [['--beat-to', 'host.example:1'], ['--beat-to', '127.0.0.1'], ['--beat-to', '127.0.0.1:0'], ['--beat-to', '127.0.0.1:70000'], ['--beat-to', '1..2:5'], ['--beat-to', '127.0.0.1:5', '--beat-every-ms', '10'], ['--beat-to', '127.0.0.1:5', '--beat-every-ms', 'x']]) {
      const r = spawnSync('dash', [HEARTBEAT, '--run', 'x', '--max-seconds', '1', ...bad], { env, encoding: 'utf8', timeout: 10_000 });
      expect(r.status, bad.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/--beat-(to must be IPV4:PORT|every-ms must be 100\.\.10000)/);
    }
  }, 60_000);

  it.skipIf(ncOnPath)(`without nc the heartbeat runs on and says there are no beats${ncOnPath ? ' (skipped: an nc is in /usr/bin or /bin here)' : ''}`, () => {
    const r = spawnSync('dash', [HEARTBEAT, '--run', 'x', '--max-seconds', '1', '--beat-to', '127.0.0.1:9'], { env: noNc, encoding: 'utf8', timeout: 10_000 });
    expect(r.status).toBe(0);
    expect(r.stderr).toContain('nc not found: no network beats');
    expect(r.stdout).toMatch(/^FBXEN1 HB x 1 /m);
  }, 30_000);
});
