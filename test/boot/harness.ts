/**
 * End-to-end harness for `fbxen boot --toolstack xl`: a temporary "host" with the fake xl (a SIMULATION,
 * test/support/fake-xl/xl) first on PATH, a fake /sys/class/net with a bridge, an image file, and a guest
 * script whose console output ends with a real FBXEN1 frame made by verify's own encoder.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { vi } from 'vitest';
import { run } from '../../src/cli.js';
import { encodeConsoleFrame, packBundle, type Bundle } from '../../src/core/verify/index.js';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
export const FAKE_XL_DIR = join(REPO, 'test/support/fake-xl');

export interface Host {
  dir: string;
  state: string;
  net: string;
  artifacts: string;
  env: NodeJS.ProcessEnv;
}

export function makeHost(opts: { scenario?: Record<string, unknown>; bridges?: string[] } = {}): Host {
  const dir = mkdtempSync(join(tmpdir(), 'fbxen-boot-'));
  const state = join(dir, 'xl-state');
  const net = join(dir, 'sys-class-net');
  mkdirSync(state);
  for (const br of opts.bridges ?? ['xenbr0']) mkdirSync(join(net, br, 'bridge'), { recursive: true });
  mkdirSync(join(net, 'eth0'), { recursive: true }); // an interface that is not a bridge
  if (opts.scenario) writeFileSync(join(state, 'scenario.json'), JSON.stringify(opts.scenario));
  return {
    dir,
    state,
    net,
    artifacts: join(dir, 'runs'),
    env: { ...process.env, PATH: `${FAKE_XL_DIR}:${process.env.PATH ?? ''}`, FAKE_XL_STATE: state, FBXEN_SYS_CLASS_NET: net, NO_COLOR: '1', CI: 'true' },
  };
}

export function makeImage(host: Host, name: string, format: 'raw' | 'qcow2' | 'vhd' = 'raw'): string {
  const out = join(host.dir, 'out');
  mkdirSync(out, { recursive: true });
  const p = join(out, name);
  const data = Buffer.alloc(64 * 1024);
  // A raw disk as fbxen build writes it: protective MBR (boot signature 55 AA) and the GPT header at LBA 1.
  if (format === 'raw') {
    data[510] = 0x55;
    data[511] = 0xaa;
    data.write('EFI PART', 512, 'latin1');
  }
  if (format === 'qcow2') Buffer.from([0x51, 0x46, 0x49, 0xfb, 0, 0, 0, 3]).copy(data, 0);
  if (format === 'vhd') Buffer.from('conectix').copy(data, data.length - 512);
  writeFileSync(p, data);
  return p;
}

/** A small bundle as the collector would send it: enough for the xen-guest probe to answer. */
export function sampleBundle(run: string, phase = 'boot', vmGuest = 'xen'): Bundle {
  const sections = new Map<string, string>([
    ['uname', 'FreeBSD fbxen 14.3-RELEASE FreeBSD 14.3-RELEASE releng/14.3-n271432 GENERIC amd64\n'],
    ['sysctl', `kern.ostype: FreeBSD\nkern.osrelease: 14.3-RELEASE\nkern.vm_guest: ${vmGuest}\nhw.ncpu: 2\nhw.machine: amd64\nhw.machine_arch: amd64\n`],
  ]);
  return {
    meta: { bundle: 'fbxen-bundle/1', run, phase, collector: 'test-harness', started: '1763935200', finished: '1763935260' },
    index: [
      { name: 'uname', status: 0, command: 'uname -a' },
      { name: 'sysctl', status: 0, command: 'sysctl kern.ostype kern.osrelease kern.vm_guest hw.ncpu hw.machine hw.machine_arch' },
    ],
    sections,
  };
}

/** The guest's console: FreeBSD-like boot lines, then (unless `frame: false`) the collector's double frame. */
export async function writeGuest(host: Host, opts: { run?: string; frame?: boolean; tail?: string[]; before?: string[]; vmGuest?: string } = {}): Promise<void> {
  const lines = [
    'SeaBIOS (version 1.16.2-debian-1.16.2-1)',
    'Booting from Hard Disk...',
    '/boot/config: -Dh',
    'Consoles: internal video/keyboard  serial port',
    'FreeBSD/x86 bootstrap loader, Revision 1.1',
    '@sleep 100',
    'Copyright (c) 1992-2023 The FreeBSD Project.',
    'FreeBSD 14.3-RELEASE releng/14.3-n271432 GENERIC amd64',
    'XEN: Hypervisor version 4.17 detected.',
    'xbd0: 6144MB <Virtual Block Device> at device/vbd/51712 on xenbusb_front0',
    'xn0: <Virtual Network Interface> at device/vif/0 on xenbusb_front0',
    ...(opts.before ?? []),
    '@sleep 100',
  ];
  if (opts.frame !== false) {
    const bundle = sampleBundle(opts.run ?? 'r1', 'boot', opts.vmGuest);
    const frame = encodeConsoleFrame(await packBundle(bundle), opts.run ?? 'r1', 'boot');
    lines.push(...frame.split('\n').filter(Boolean));
  }
  lines.push(...(opts.tail ?? ['fbxen-collect: done', '@sleep 50']));
  writeFileSync(join(host.state, 'guest.txt'), `${lines.join('\n')}\n`);
}

export interface Domain {
  domid: number;
  name: string;
  state: string;
}

export function domains(host: Host): Domain[] {
  const p = join(host.state, 'domains.json');
  // as the fake's xl list shows them: a powered-off domain whose linger (poweroffLingersMs) is over is gone
  return existsSync(p) ? (JSON.parse(readFileSync(p, 'utf8')) as { domains: (Domain & { goneAt?: number })[] }).domains.filter((d) => d.goneAt === undefined || d.goneAt > Date.now()) : [];
}

export function xlCalls(host: Host): string[][] {
  const p = join(host.state, 'calls.log');
  return existsSync(p)
    ? readFileSync(p, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => (JSON.parse(l) as { argv: string[] }).argv)
    : [];
}

export interface CliOutcome {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the real CLI entry in this process (fresh sources, no build), capturing stdout and stderr. */
export async function fbxen(args: string[], host: Host, during?: () => Promise<void>): Promise<CliOutcome> {
  let stdout = '';
  let stderr = '';
  const out = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  const err = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    const running = run(args, host.env);
    if (during) await during();
    const code = await running;
    return { code, stdout, stderr };
  } finally {
    out.mockRestore();
    err.mockRestore();
  }
}

export async function until(what: string, check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
