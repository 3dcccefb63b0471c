import { describe, expect, it } from 'vitest';
import { UsageError } from '../../src/core/errors.js';
import { checkQemuPath, chooseAccel, qemuArgs, type QemuPlan } from '../../src/core/lab/qemu.js';

const plan: QemuPlan = {
  accel: 'tcg',
  memoryMiB: 3072,
  cpus: 2,
  port: 40022,
  image: { disk: '/lab/images/k/dom0.img', xen: '/lab/images/k/xen', kernel: '/lab/images/k/vmlinuz', initrd: '/lab/images/k/initrd.gz' },
  serialLog: '/lab/serial.log',
  pidFile: '/lab/qemu.pid',
};

describe('the lab QEMU command line', () => {
  it('golden: tcg with SVM and NPT, the image never written, ssh on loopback only', () => {
    expect(qemuArgs(plan).join(' ')).toBe(
      [
        '-name fbxen-lab,process=fbxen-lab -machine q35 -accel tcg,thread=multi -cpu qemu64,+svm,+npt -smp 2 -m 3072',
        '-nodefaults -no-user-config -display none -monitor none -serial file:/lab/serial.log',
        '-drive file=/lab/images/k/dom0.img,if=virtio,format=raw,cache=unsafe,snapshot=on',
        '-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:40022-:22 -device virtio-net-pci,netdev=n0',
        '-kernel /lab/images/k/xen -append dom0_mem=1024M,max:1024M dom0_max_vcpus=2 console=com1 com1=115200,8n1 loglvl=all guest_loglvl=all',
        '-initrd /lab/images/k/vmlinuz root=/dev/vda rw console=hvc0 earlyprintk=xen,/lab/images/k/initrd.gz',
        '-pidfile /lab/qemu.pid -daemonize',
      ].join(' '),
    );
  });

  it('kvm passes the host CPU through', () => {
    const a = qemuArgs({ ...plan, accel: 'kvm' });
    expect(a[a.indexOf('-accel') + 1]).toBe('kvm');
    expect(a[a.indexOf('-cpu') + 1]).toBe('host');
  });

  it('refuses paths QEMU would split (a comma or a space), naming the fix', () => {
    for (const bad of ['/my lab/x', '/lab,2/x', '/lab\tx']) {
      expect(() => checkQemuPath(bad)).toThrow(UsageError);
      expect(() => qemuArgs({ ...plan, serialLog: bad })).toThrow(/space or a comma/);
      try {
        checkQemuPath(bad);
      } catch (e) {
        expect((e as UsageError).hint).toMatch(/--dir/);
      }
    }
    expect(() => checkQemuPath('/home/u/.cache/fbxen/lab')).not.toThrow();
  });
});

describe('--accel auto', () => {
  const svm = 'processor\t: 0\nflags\t\t: fpu vme svm npt\n';
  const none = 'processor\t: 0\nflags\t\t: fpu vme hypervisor\n';
  it.each([
    ['auto', true, svm, 'kvm'],
    ['auto', true, 'flags\t\t: fpu vmx ept\n', 'kvm'],
    ['auto', false, svm, 'tcg'],
    // This machine class: /dev/kvm opens (a paravirtual KVM) but the CPU has neither flag.
    ['auto', true, none, 'tcg'],
    ['auto', true, '', 'tcg'],
    ['tcg', true, svm, 'tcg'],
    ['kvm', false, none, 'kvm'],
  ] as const)('%s, /dev/kvm usable %s → %s', (requested, usable, cpuinfo, expected) => {
    const r = chooseAccel(requested, usable, cpuinfo);
    expect(r.accel).toBe(expected);
    expect(r.why.length).toBeGreaterThan(3);
  });
});
