/**
 * Timing-sensitive (runs in the `timing` project, alone on the machine after the main suite): the guest
 * clock offset is anchored to the host arrival times of the heartbeat lines, which a host busy with other
 * tests delays by more than the test allows.
 */
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { estimateDowntime, parseHeartbeat } from '../../src/core/migrate/heartbeat.js';

const REPO = join(import.meta.dirname, '../..');

describe('the ssh channel with the real runner (fake ssh and sysctl stand-in: SIMULATION)', () => {
  it('streams the heartbeat to sh -s, stamps its lines on arrival, stops it by its stop file; the guest clock offset comes out near zero', async () => {
    const { createExecaRunner } = await import('../../src/core/exec/runner.js');
    const { sshChannel } = await import('../../src/core/migrate/channel.js');
    const { silentProgress } = await import('../../src/core/progress.js');
    const path = `${join(REPO, 'test/support/migrate/fake-ssh')}:${join(REPO, 'test/support/migrate/standins')}:${process.env.PATH ?? ''}`;
    const saved = process.env.PATH;
    process.env.PATH = path; // execa resolves ssh on this process's PATH
    try {
      const ch = sshChannel({ ssh: { target: 'root@guest', hostKeyChecking: 'strict' }, runner: createExecaRunner(), progress: silentProgress, cwd: REPO, collectorScript: join(REPO, 'guest/fbxen-collect'), heartbeatScript: join(REPO, 'guest/fbxen-heartbeat') });
      const run = `ssh-${process.pid}`;
      await ch.startHeartbeat(run, 'disk', 30);
      await new Promise((r) => setTimeout(r, 2300));
      // A disk round (write 4 MiB, fsync, read back) can take longer than 2.3 s when other tests load the
      // disk: wait for the first one (the heartbeat runs up to 30 s) rather than for a fixed time.
      const until = Date.now() + 20_000;
      while (parseHeartbeat(ch.heartbeatLines(), run).disk.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 100));
      const t0 = Date.now();
      await ch.stopHeartbeat(run);
      expect(Date.now() - t0).toBeLessThan(3000); // it stopped on the stop file, not at --max-seconds
      const hb = parseHeartbeat(ch.heartbeatLines(), run);
      expect(hb.beats.length).toBeGreaterThan(20); // ~160 on an idle host; far fewer on a loaded one
      expect(hb.beats.every((b) => b.hostMs !== undefined)).toBe(true);
      expect(hb.disk.length).toBeGreaterThan(0);
      expect(hb.disk.every((d) => d.ok)).toBe(true);
      const est = estimateDowntime(hb)!;
      // Same clock on both sides (the stand-in reads the host's): the anchored offset is the pipe latency.
      const offsets = [est.clockOffsetMs.before, est.clockOffsetMs.after].filter((o) => o !== null);
      expect(offsets.length).toBeGreaterThan(0);
      for (const o of offsets) expect(Math.abs(o)).toBeLessThan(30);
      // Nothing paused this "guest"; a loaded CI host can still stall the shell for a while.
      expect(est.downtimeMs).toBeLessThan(1000);
      await ch.close();
    } finally {
      process.env.PATH = saved;
    }
  });
});
