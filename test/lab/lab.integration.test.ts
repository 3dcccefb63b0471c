/**
 * The lab against the real thing: `fbxen lab up` (builds or reuses the dom0 image, boots Xen 4.17 under
 * QEMU), `lab status --json`, `lab ssh -- xl info`, `lab down`. Minutes of emulation: enabled by
 * FBXEN_LAB_TESTS=1 (scripts/lab-test.sh sets it). The image is cached in FBXEN_LAB_DIR (default
 * ~/.cache/fbxen/lab-test) so that later runs only boot. afterAll stops any QEMU the test started.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { isLabProcess } from '../../src/core/lab/target.js';
import { fbxen } from '../support/cli.js';

const enabled = process.env.FBXEN_LAB_TESTS === '1';
const dir = process.env.FBXEN_LAB_DIR || join(homedir(), '.cache', 'fbxen', 'lab-test');

function stateNow(): { pid: number; serialLog: string } | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as { pid: number; serialLog: string };
  } catch {
    return undefined;
  }
}

afterAll(async () => {
  if (!enabled) return;
  const before = stateNow();
  fbxen(['lab', 'down', '--dir', dir]);
  // Whatever down did, no QEMU of this test outlives it.
  if (before && (await isLabProcess(before))) process.kill(before.pid, 'SIGKILL');
}, 120_000);

describe('the lab on a real Xen under QEMU', () => {
  it.skipIf(!enabled)(
    'up, status --json, ssh -- xl info, down (set FBXEN_LAB_TESTS=1 to run: minutes of emulation)',
    async () => {
      // A lab left running by an earlier run would make `up` refuse: stop it first.
      fbxen(['lab', 'down', '--dir', dir]);
      const up = fbxen(['--json', 'lab', 'up', '--dir', dir, '--timeout', '900']);
      expect(up.stderr).not.toMatch(/error/);
      expect(up.code).toBe(0);
      const started = JSON.parse(up.stdout) as { pid: number; port: number; bootSeconds: number; buildSeconds: number | null; xl: { virtCaps: string } };
      expect(started.xl.virtCaps).toMatch(/\bhvm\b/);
      expect(started.xl.virtCaps).toMatch(/\bhap\b/);
      process.stderr.write(`lab: ${started.buildSeconds === null ? 'image cached' : `image built in ${started.buildSeconds} s`}, QEMU start to xl info ${started.bootSeconds} s\n`);

      const status = fbxen(['--json', 'lab', 'status', '--dir', dir]);
      expect(status.code).toBe(0);
      const s = JSON.parse(status.stdout) as { running: boolean; ready: boolean; pid: number; ssh: { port: number; host: string; user: string }; xl: { xenVersion: string; nrCpus: number } };
      expect(s).toMatchObject({ running: true, ready: true, pid: started.pid, ssh: { port: started.port, host: '127.0.0.1', user: 'root' } });
      expect(s.xl.xenVersion).toMatch(/^4\.17\./);
      expect(s.xl.nrCpus).toBe(2);

      const ssh = fbxen(['lab', 'ssh', '--dir', dir, '--', 'xl', 'info']);
      expect(ssh.code).toBe(0);
      expect(ssh.stdout).toMatch(/^xen_caps\s*:.*hvm-3\.0-x86_64/m);
      expect(ssh.stdout).toMatch(/^host\s*: fbxen-lab$/m);

      const down = fbxen(['lab', 'down', '--dir', dir]);
      expect(down.code).toBe(0);
      expect(down.stdout).toMatch(/powered off|stopped|killed/);
      expect(await isLabProcess({ pid: started.pid, serialLog: join(dir, 'serial.log') })).toBe(false);
      const after = fbxen(['--json', 'lab', 'status', '--dir', dir]);
      expect(JSON.parse(after.stdout)).toMatchObject({ running: false });
    },
    30 * 60_000,
  );
});
