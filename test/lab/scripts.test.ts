/** The lab's shell: dom0's init, the initramfs init, the image build, setup and CI scripts pass shellcheck (-x: sourced files too). */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '../..');
const haveShellcheck = spawnSync('shellcheck', ['--version']).status === 0;

describe('lab scripts', () => {
  it.skipIf(!haveShellcheck).each([
    ['scripts/lab/dom0-init.sh', 'sh'],
    ['scripts/lab/initramfs-init.sh', 'sh'],
    ['scripts/lab/build-image.sh', 'sh'],
    ['scripts/lab/customize.sh', 'sh'],
    ['scripts/lab-setup.sh', 'bash'],
    ['scripts/setup.sh', 'bash'],
    ['scripts/lib/apt-install.sh', 'bash'],
    ['scripts/lab-test.sh', 'bash'],
    ['test/lab/fake-bin/qemu-system-x86_64', 'sh'],
    ['test/lab/standin-guest/init', 'sh'],
    ['test/lab/standin-guest/fbxen-collect', 'sh'],
    ['test/lab/standin-guest/sysctl', 'sh'],
    ['test/lab/standin-guest/vmstat', 'sh'],
    ['test/lab/standin-guest/poweroff', 'sh'],
    ['test/lab/standin-guest/nc', 'sh'],
    ['test/lab/standin-guest/route', 'sh'],
  ])('%s passes shellcheck (%s)', (file, shell) => {
    const r = spawnSync('shellcheck', ['-x', '-s', shell, file], { cwd: REPO, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });

  it("dom0's init makes what Xen's tools need in a minimal root (xen-lab.md's pitfalls)", async () => {
    const { readFileSync } = await import('node:fs');
    const init = readFileSync(join(REPO, 'scripts/lab/dom0-init.sh'), 'utf8');
    for (const needed of ['ln -sf /proc/self/fd/0 /dev/stdin', 'ln -sfn /proc/self/fd /dev/fd', 'mkdir -p /run/lock', '/etc/init.d/xen start', 'ip link add xenbr0 type bridge', '/usr/sbin/sshd']) {
      expect(init).toContain(needed);
    }
    // xenbr0 has no uplink: no interface is ever made its port.
    expect(init).not.toMatch(/master xenbr0|addif xenbr0/);
  });
});
