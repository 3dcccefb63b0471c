/**
 * The QEMU command line of the lab (xen-lab.md's outline): Xen as the multiboot kernel, the dom0 kernel
 * and initramfs as its modules, the cached image as a virtio disk that is never written (snapshot=on),
 * ssh forwarded from a 127.0.0.1 port only, the serial console (Xen's com1) into a file. Pure: the
 * golden test pins it.
 */
import { UsageError } from '../errors.js';

export type Accel = 'kvm' | 'tcg';

export interface QemuPlan {
  accel: Accel;
  /** Guest memory in MiB (dom0 gets DOM0_MEM of it, guests the rest). */
  memoryMiB: number;
  cpus: number;
  port: number;
  image: { disk: string; xen: string; kernel: string; initrd: string };
  serialLog: string;
  pidFile: string;
}

export const DOM0_MEM_MIB = 1024;

/**
 * -cpu qemu64,+svm,+npt gives Xen SVM and HAP under emulation (virt_caps: pv hvm hap); -cpu max crashed
 * dom0 at once (xen-lab.md). Under KVM the host's CPU is passed through.
 */
export function cpuModel(accel: Accel): string {
  return accel === 'kvm' ? 'host' : 'qemu64,+svm,+npt';
}

/**
 * QEMU splits -initrd's module list at commas and a module's path from its arguments at the first
 * space, and its other options at commas: a path holding either cannot be passed.
 */
export function checkQemuPath(path: string): void {
  if (/[\s,]/.test(path)) {
    throw new UsageError(`the lab path ${JSON.stringify(path)} holds a space or a comma, which QEMU's -initrd and -drive cannot carry`, {
      hint: 'give --dir a directory whose path has neither',
    });
  }
}

export function qemuArgs(p: QemuPlan): string[] {
  for (const path of [p.image.disk, p.image.xen, p.image.kernel, p.image.initrd, p.serialLog, p.pidFile]) checkQemuPath(path);
  const xenCmdline = [
    `dom0_mem=${DOM0_MEM_MIB}M,max:${DOM0_MEM_MIB}M`,
    `dom0_max_vcpus=${p.cpus}`,
    'console=com1',
    'com1=115200,8n1',
    'loglvl=all',
    'guest_loglvl=all',
  ].join(' ');
  const dom0Cmdline = 'root=/dev/vda rw console=hvc0 earlyprintk=xen';
  return [
    '-name', 'fbxen-lab,process=fbxen-lab',
    '-machine', 'q35',
    '-accel', p.accel === 'kvm' ? 'kvm' : 'tcg,thread=multi',
    '-cpu', cpuModel(p.accel),
    '-smp', String(p.cpus),
    '-m', String(p.memoryMiB),
    '-nodefaults',
    '-no-user-config',
    '-display', 'none',
    '-monitor', 'none',
    '-serial', `file:${p.serialLog}`,
    '-drive', `file=${p.image.disk},if=virtio,format=raw,cache=unsafe,snapshot=on`,
    // restrict=on: dom0 reaches nothing outside the VM; the explicit forward still works.
    '-netdev', `user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:${p.port}-:22`,
    '-device', 'virtio-net-pci,netdev=n0',
    '-kernel', p.image.xen,
    '-append', xenCmdline,
    '-initrd', `${p.image.kernel} ${dom0Cmdline},${p.image.initrd}`,
    '-pidfile', p.pidFile,
    '-daemonize',
  ];
}

/**
 * --accel auto: KVM only when /dev/kvm opens read-write AND the host CPU shows vmx or svm. Xen inside the
 * VM needs hardware virtualization from the CPU QEMU gives it; a /dev/kvm without those flags (a nested
 * or paravirtual KVM) cannot give it, and Xen's HVM guests would not start.
 */
export function chooseAccel(requested: 'auto' | Accel, kvmUsable: boolean, cpuinfo: string): { accel: Accel; why: string } {
  const flags = /^flags\s*:(.*)$/m.exec(cpuinfo)?.[1]?.split(/\s+/) ?? [];
  const virt = flags.includes('vmx') ? 'vmx' : flags.includes('svm') ? 'svm' : undefined;
  if (requested === 'tcg') return { accel: 'tcg', why: '--accel tcg' };
  if (requested === 'kvm') return { accel: 'kvm', why: '--accel kvm' };
  if (!kvmUsable) return { accel: 'tcg', why: '/dev/kvm cannot be opened read-write' };
  if (!virt) return { accel: 'tcg', why: '/dev/kvm opens but the CPU shows neither vmx nor svm (no nested virtualization for Xen)' };
  return { accel: 'kvm', why: `/dev/kvm opens and the CPU has ${virt}` };
}
