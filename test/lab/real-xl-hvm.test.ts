/**
 * Real-xl test A: fbxen's HVM guest on the REAL xl (Debian's Xen 4.17 in the lab VM, docs/lab.md), not
 * the fake one. `fbxen boot --host lab` of an image fbxen built from the test sample (FreeBSD-shaped, NOT
 * bootable: no FreeBSD ever answers) is accepted by `xl create`; the device model runs; the disk and the
 * fbxen CD are attached (xl block-list, xenstore); the console is captured; the boot times out as
 * documented (exit 6) and the domain is destroyed, the run's directory on the dom0 removed. SIGINT
 * mid-boot: destroyed, removed, exit 130. Then fbxen's xl driver saves, restores and live-migrates (to
 * localhost) a domain made from fbxen's own config: a running domain need not have booted an OS.
 * Enabled by FBXEN_LAB_TESTS=1 (scripts/lab-test.sh); skipped with the reason otherwise.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DomainRef } from '../../src/core/toolstack/types.js';
import { stateOf } from '../../src/core/toolstack/xl/xl-migrate.js';
import { fbxen } from '../support/cli.js';
import { enabled, fbxenChild, keptDomain, labConfig, labDriver, labSh, SKIP, useLab, waitFor, xlList } from './real-xl-support.js';

const lab = useLab('real-xl-hvm', 'fbxen-real-', ['/var/lib/fbxen/runs/real-*', '/var/lib/fbxen/lab-tests']);

/** Waits until the domain runs in the dom0 (xl list shows it neither paused nor gone). */
const running = (name: string, stop: Promise<unknown>) =>
  waitFor(`${name} running in the lab`, async () => {
    const d = (await xlList()).get(name);
    return d && stateOf(d.state) === 'running' ? d : undefined;
  }, 300_000, stop);

describe(`real xl in the lab: fbxen's HVM guest${SKIP}`, () => {
  it.skipIf(!enabled)('boot --host lab: real xl create takes the config, device model up, disk and CD attached, console captured; timeout exit 6, domain destroyed, run directory removed', async () => {
    const cfg = labConfig(lab.work);
    const artifacts = join(lab.work, 'runs');
    const boot = fbxenChild(['--config', cfg, 'boot', '--host', 'lab', '--image', lab.image, '--name', 'fbxen-real-a', '--run-id', 'real-a', '--vcpus', '1', '--memory', '512', '--timeout', '60', '--artifacts', artifacts]);
    const dom = await running('fbxen-real-a', boot.done);

    // What real xl made of fbxen's config, while the domain runs.
    // xvda (blkback) and hdc (the CD, QEMU's qdisk): the CD may be listed some seconds after the domain runs.
    const vdevs = await waitFor('xvda and hdc in xl block-list', async () => {
      const blocks = await labSh('xl block-list fbxen-real-a');
      const v = blocks.stdout.split('\n').slice(1).map((l) => l.trim().split(/\s+/)[0]).filter(Boolean).sort();
      return v.length >= 2 ? v : undefined;
    }, 120_000, boot.done);
    expect(vdevs).toEqual(['51712', '5632']);
    const dm = await labSh(`xenstore-read /local/domain/0/device-model/${dom.id}/state; xenstore-read /local/domain/0/backend/qdisk/${dom.id}/5632/params; xenstore-read /local/domain/0/backend/vbd/${dom.id}/51712/params; pgrep -f "[q]emu-system-i386 -xen-domid ${dom.id} " >/dev/null && echo dm-process; ls /var/lib/fbxen/runs/real-a`);
    // The CD is QEMU's (qdisk, params "aio:FILE"), the disk blkback's (params the file); the device model is up.
    expect(dm.stdout.split('\n')).toEqual(['running', 'aio:/var/lib/fbxen/runs/real-a/fbxen-cd.iso', '/var/lib/fbxen/runs/real-a/real.raw', 'dm-process', 'fbxen-cd.iso', 'real.raw', 'xl.cfg', '']);

    const r = await boot.done;
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toContain('no collector frame of run real-a on the console within 60 s');
    const dir = join(artifacts, 'fbxen-real-a', 'real-a');
    expect(JSON.parse(readFileSync(join(dir, 'run.json'), 'utf8'))).toMatchObject({ outcome: 'timeout', toolstack: 'xl' });
    expect(existsSync(join(dir, 'console.log'))).toBe(true); // captured (under emulation SeaBIOS prints nothing to the serial port within 60 s)
    expect(readFileSync(join(dir, 'transcript.log'), 'utf8')).toContain("'exec xl create -c /var/lib/fbxen/runs/real-a/xl.cfg'");

    expect((await xlList()).has('fbxen-real-a')).toBe(false);
    const left = await labSh("ls -A /var/lib/fbxen/runs; pgrep -af '[b]in/xl .*/runs/real-a/' || true");
    expect(left.stdout.trim()).toBe(''); // no run directory, no xl console client left behind
  }, 600_000);

  it.skipIf(!enabled)('SIGINT mid-boot on the real xl: the domain is destroyed, the remote run directory removed, exit 130', async () => {
    const cfg = labConfig(lab.work);
    const boot = fbxenChild(['--config', cfg, 'boot', '--host', 'lab', '--image', lab.image, '--name', 'fbxen-real-i', '--run-id', 'real-i', '--vcpus', '1', '--memory', '512', '--timeout', '600', '--artifacts', join(lab.work, 'runs')]);
    await running('fbxen-real-i', boot.done);
    boot.child.kill('SIGINT');
    const r = await boot.done;
    expect(r.code, r.stderr).toBe(130);
    expect((await xlList()).has('fbxen-real-i')).toBe(false);
    const left = await labSh("ls -A /var/lib/fbxen/runs; pgrep -af '[b]in/xl .*/runs/real-i/' || true");
    expect(left.stdout.trim()).toBe('');
  }, 600_000);

  it.skipIf(!enabled)("fbxen's xl driver saves, restores and live-migrates (localhost) a domain made from fbxen's own config", async () => {
    await keptDomain(lab.work, lab.image, 'fbxen-real-m', '/var/lib/fbxen/lab-tests');
    const { driver, commands } = await labDriver('real-m');
    try {
      expect(await driver.migrationRoute('fbxen-real-m', 'save-restore', undefined)).toMatchObject({ origin: 'localhost' });
      const where = await driver.locate('fbxen-real-m');
      expect(where).toMatchObject({ host: 'localhost', name: 'fbxen-real-m', state: 'running' });
      const ref: DomainRef = { name: 'fbxen-real-m', id: where!.id, host: 'localhost' };
      let t = Date.now();
      const cp = await driver.save(ref, '/unused-here', 1, 600_000);
      const saveMs = Date.now() - t;
      expect(cp.file).toBe('/var/lib/fbxen/runs/real-m/checkpoint-1.xlsave');
      expect((await xlList()).has('fbxen-real-m')).toBe(false); // saved: gone until restored
      t = Date.now();
      const restored = await driver.restore(cp, 600_000);
      const restoreMs = Date.now() - t;
      expect(restored.id).not.toBe(ref.id); // real xl gives the restored domain a new id
      expect(stateOf((await xlList()).get('fbxen-real-m')?.state ?? '')).toBe('running');
      t = Date.now();
      const out = await driver.migrate(restored, 'localhost', 900_000);
      const migrateMs = Date.now() - t;
      expect(out.where).toMatchObject({ host: 'localhost', name: 'fbxen-real-m', state: 'running' });
      expect(out.where!.id).not.toBe(restored.id);
      process.stderr.write(`real xl, HVM 256 MiB: save ${saveMs} ms, restore ${restoreMs} ms, migrate localhost ${migrateMs} ms (xl's own ${out.toolstackMs} ms)\n`);
      expect(commands.every((x) => x.command.startsWith('ssh ') || x.command.startsWith('tar '))).toBe(true);
    } finally {
      await driver.close();
    }
    expect((await labSh('ls -A /var/lib/fbxen/runs')).stdout.trim()).toBe(''); // the checkpoint's directory went with close()
  }, 1_500_000);
});
