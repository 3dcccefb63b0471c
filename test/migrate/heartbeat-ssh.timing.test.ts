/**
 * Timing-sensitive (runs in the `timing` project, after the main suite): the real heartbeat script over
 * the ssh channel and the real execa runner. A busy host stretches the beats from ~14 ms to hundreds of
 * ms and delays their arrival, so nothing here assumes a speed: the test waits for what it needs (bounded
 * well inside the heartbeat's own --max-seconds) and checks what holds at any speed. The sysctl stand-in
 * reads the host's clock (the counter is its ns, mod 2^32), so each beat's true time is known and the
 * arrival stamps and the clock offset can be checked against causality, not against a latency guess.
 */
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { estimateDowntime, parseHeartbeat, type Beat } from '../../src/core/migrate/heartbeat.js';

const REPO = join(import.meta.dirname, '../..');
const WRAP = 4294967296n;
/** The heartbeat's own limit: before it, only the stop file can end the script. */
const MAX_SECONDS = 120;
/** How long the test waits for beats and a disk round, and for the stop: far inside MAX_SECONDS. */
const WAIT_MS = 45_000;

/** When the stand-in read the counter (ns since the epoch): after `date` began the beat's wall second. */
function counterTimeNs(b: Beat): bigint {
  const from = BigInt(b.wall) * 1_000_000_000n;
  return from + (((b.counter - from) % WRAP) + WRAP) % WRAP;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('the ssh channel with the real runner (fake ssh and sysctl stand-in: SIMULATION)', () => {
  it('streams the heartbeat to sh -s, stamps each line after it was written, stops it by its stop file; a reported clock offset is never ahead of causality', async () => {
    const { createExecaRunner } = await import('../../src/core/exec/runner.js');
    const { sshChannel, stopFile } = await import('../../src/core/migrate/channel.js');
    const { silentProgress } = await import('../../src/core/progress.js');
    const path = `${join(REPO, 'test/support/migrate/fake-ssh')}:${join(REPO, 'test/support/migrate/standins')}:${process.env.PATH ?? ''}`;
    const saved = process.env.PATH;
    process.env.PATH = path; // execa resolves ssh on this process's PATH
    const run = `ssh-${process.pid}`;
    const ch = sshChannel({ ssh: { target: 'root@guest', hostKeyChecking: 'strict' }, runner: createExecaRunner(), progress: silentProgress, cwd: REPO, collectorScript: join(REPO, 'guest/fbxen-collect'), heartbeatScript: join(REPO, 'guest/fbxen-heartbeat') });
    try {
      const started = Date.now();
      await ch.startHeartbeat(run, 'disk', MAX_SECONDS);
      // More than 20 beats and a disk round (write 4 MiB, fsync, read back): ~2 s idle, far longer loaded.
      let hb = parseHeartbeat(ch.heartbeatLines(), run);
      while ((hb.beats.length <= 20 || hb.disk.length === 0) && Date.now() - started < WAIT_MS) {
        await sleep(100);
        hb = parseHeartbeat(ch.heartbeatLines(), run);
      }
      expect(hb.beats.length).toBeGreaterThan(20);
      expect(hb.disk.length).toBeGreaterThan(0);

      await ch.stopHeartbeat(run);
      // The script removes its stop file as it leaves its loop; before --max-seconds only the stop file
      // can have ended that loop (a script that died would leave the file fbxen touched).
      while (existsSync(stopFile(run)) && Date.now() - started < 2 * WAIT_MS) await sleep(50);
      expect(existsSync(stopFile(run))).toBe(false);
      expect(Date.now() - started).toBeLessThan((MAX_SECONDS - 10) * 1000);

      hb = parseHeartbeat(ch.heartbeatLines(), run);
      expect(hb.rejected).toBe(0);
      // TCP loses nothing: every beat the guest wrote arrived.
      expect(hb.beats.map((b) => b.seq)).toEqual(hb.beats.map((_b, i) => i + 1));
      expect(hb.disk.every((d) => d.ok)).toBe(true);
      // Stamped on arrival: never before the guest wrote the line (Date.now() has 1 ms steps).
      for (const b of hb.beats) {
        expect(b.hostMs).toBeDefined();
        expect(b.wall * 1000).toBeLessThanOrEqual(b.hostMs!);
        expect(counterTimeNs(b)).toBeLessThanOrEqual(BigInt(b.hostMs! + 1) * 1_000_000n);
      }

      const est = estimateDowntime(hb)!;
      expect(est.lostBeats).toBe(0);
      // Guest wall time minus host arrival time, from the least delayed line: the wall anchoring puts the
      // guest clock at most half its 20 ms interval ahead, a line cannot arrive before it was written,
      // plus the 1 ms stamp step and 0.5 ms of rounding. (How far behind depends on the load: not checked.)
      for (const o of [est.clockOffsetMs.before, est.clockOffsetMs.after]) if (o !== null) expect(o).toBeLessThanOrEqual(11.5);
      // Nothing paused this "guest"; its longest stall (known exactly here) bounds what the estimate may call downtime.
      const times = hb.beats.map(counterTimeNs);
      const longestMs = Math.max(...times.slice(1).map((t, i) => Number(t - times[i]!) / 1e6));
      expect(est.downtimeMs, JSON.stringify(est)).toBeLessThanOrEqual(longestMs + est.uncertaintyMs! + 0.1);
    } finally {
      process.env.PATH = saved;
      await ch.close();
      rmSync(stopFile(run), { force: true });
    }
  });
});
