/** `fbxen boot --toolstack xl --dry-run`: the exact plan (golden), and nothing created or run. */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { fbxen, makeHost, makeImage, xlCalls } from './harness.js';

describe('boot --dry-run', () => {
  const cases: { id: string; args: (iso: string) => string[] }[] = [
    { id: 'fbxen-cd', args: () => [] },
    { id: 'empty-cdrom-keep-4vcpu', args: () => ['--empty-cdrom', '--keep', '--vcpus', '4', '--memory', '2G'] },
    { id: 'iso-verify-timeout', args: (iso) => ['--iso', iso, '--verify', '--timeout', '900', '--grace', '30', '--bridge', 'xenbr1'] },
  ];
  for (const c of cases) {
    it(`prints the plan and creates nothing: ${c.id}`, async () => {
      const h = makeHost();
      const image = makeImage(h, 'freebsd-14.3-RELEASE-amd64.qcow2', 'qcow2');
      const iso = makeImage(h, 'install.iso');
      const r = await fbxen(['boot', '--toolstack', 'xl', '--dry-run', '--image', image, '--name', 'fbxen-plan', '--artifacts', h.artifacts, '--run-id', '20261123T220000Z-beef', ...c.args(iso)], h);
      expect(r.code).toBe(0);
      const plan = r.stdout.split(h.dir).join('<TMP>');
      await expect(plan).toMatchFileSnapshot(`../../fixtures/golden/plans/boot-xl-${c.id}.txt`);
      expect(existsSync(h.artifacts)).toBe(false);
      expect(xlCalls(h)).toEqual([]);
    });
  }

  it('--json gives the plan as one document', async () => {
    const h = makeHost();
    const image = makeImage(h, 'img.raw');
    const r = await fbxen(['--json', 'boot', '--dry-run', '--image', image, '--artifacts', h.artifacts, '--run-id', 'r1'], h);
    expect(r.code).toBe(0);
    const doc = JSON.parse(r.stdout) as { dryRun: boolean; name: string; run: string; plan: string };
    expect(doc).toMatchObject({ dryRun: true, name: 'fbxen-img', run: 'r1', toolstack: 'xl' });
    expect(doc.plan).toContain('name = "fbxen-img"');
  });

  it('reads the same keys from the config file, flags winning', async () => {
    const h = makeHost();
    const image = makeImage(h, 'img.raw');
    const { writeFileSync } = await import('node:fs');
    const cfg = `${h.dir}/fbxen.yaml`;
    writeFileSync(cfg, `boot:\n  image: ${image}\n  vcpus: 3\n  memory: 1536\n  bridge: xenbr7\n  empty-cdrom: true\n  artifacts: ${h.artifacts}\n`);
    const r = await fbxen(['--config', cfg, 'config', 'xl', '--vcpus', '5'], h);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('vcpus = 5\n');
    expect(r.stdout).toContain('memory = 1536\n');
    expect(r.stdout).toContain('bridge=xenbr7');
    expect(r.stdout).toContain('"vdev=hdc, access=ro, devtype=cdrom",');
    const bad = await fbxen(['--config', cfg, 'config', 'xl', '--bridge', 'br,0'], h);
    expect(bad.code).toBe(3);
    writeFileSync(cfg, `boot:\n  image: ${image}\n  vcpu: 3\n`);
    const typo = await fbxen(['--config', cfg, 'config', 'xl'], h);
    expect(typo.code).toBe(3);
    expect(typo.stderr).toContain('boot');
  });
});

describe('boot --toolstack xapi', () => {
  it('hands the same request to the XenServer driver (its dry run; no xl is run)', async () => {
    const h = makeHost();
    const image = makeImage(h, 'freebsd.vhd', 'vhd');
    const r = await fbxen(['boot', '--toolstack', 'xapi', '--dry-run', '--image', image, '--artifacts', h.artifacts, '--run-id', 'rx'], h);
    expect(xlCalls(h)).toEqual([]);
    // Whatever the XAPI driver decides about this stand-in image, it got the request: no "not available".
    expect(r.stderr).not.toContain('the XenServer driver is not available');
  });
});
