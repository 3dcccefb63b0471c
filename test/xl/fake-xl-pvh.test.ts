/**
 * The fake xl (test/support/fake-xl, a SIMULATION) on PVH configs, held against the real xl 4.17 parser
 * (Debian's xl -N create -d under the LD_PRELOAD shim): what both accept and record (c_info.type, the
 * kernel, the cmdline, no HVM section, the ISO as a plain read-only disk) and what both refuse (a PVH
 * config without kernel=). Then what only a running xl shows: the kernel is read when the domain is built,
 * and a PVH domain has the PV console only, so `xl console -t serial` fails as xenconsole does.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { beforeAll, describe, expect, it } from 'vitest';
import { createExecaRunner, type CommandRecord } from '../../src/core/exec/runner.js';
import { XlDriver } from '../../src/core/toolstack/xl/xl-driver.js';
import { macForName, PVH_ROOT_MOUNTFROM, renderXlConfig, uuidForName } from '../../src/core/toolstack/xl/xl-config.js';
import { buildXlHelpers, xlDryRun } from '../support/xl-preload/real-xl.js';

const FAKE = join(import.meta.dirname, '../support/fake-xl');
const work = mkdtempSync(join(tmpdir(), 'fbxen-fakexl-pvh-'));
// the configs' disk files exist: the fake xl stats them when it makes, restores or receives a domain, as libxl does
for (const f of ['img.raw', 'cd.iso']) writeFileSync(join(work, f), '');
let n = 0;

function fakeHost() {
  const state = mkdtempSync(join(work, 'state-'));
  const env = { ...process.env, PATH: `${FAKE}:${process.env.PATH ?? ''}`, FAKE_XL_STATE: state };
  const xl = (...args: string[]) => spawnSync('xl', args, { env, encoding: 'utf8', timeout: 30_000, input: '' });
  return { state, xl };
}

function cfg(text: string): string {
  const p = join(work, `c${n++}.cfg`);
  writeFileSync(p, text);
  return p;
}

function pvhConfig(kernel: string): string {
  return renderXlConfig({
    type: 'pvh',
    pvh: { kernel, kernelEnv: [['vfs.root.mountfrom', PVH_ROOT_MOUNTFROM], ['boot_verbose', 'YES']] },
    name: 'fbxen-pvh',
    uuid: uuidForName('fbxen-pvh'),
    mac: macForName('fbxen-pvh'),
    arch: 'amd64',
    vcpus: 2,
    memoryMiB: 512,
    image: { path: join(work, 'img.raw'), format: 'raw' },
    cdrom: { kind: 'iso', path: join(work, 'cd.iso') },
    bridge: 'xenbr0',
  });
}

interface Libxl {
  c_info: { type: string; name: string };
  b_info: Record<string, unknown>;
  disks: { vdev: string; is_cdrom?: number; readwrite?: number }[];
}

beforeAll(() => {
  buildXlHelpers();
});

describe('the fake xl (SIMULATION) reads a PVH config as the real xl 4.17 does', () => {
  it('type pvh, kernel, cmdline, no type.hvm, the ISO a read-only disk: the same in both', () => {
    const kernel = join(work, 'kernel');
    writeFileSync(kernel, 'ELF stand-in');
    const path = cfg(pvhConfig(kernel));
    const real = xlDryRun(path);
    expect(real.status).toBe(0);
    const h = fakeHost();
    expect(h.xl('create', '-q', path).status).toBe(0);
    const fake = (JSON.parse(h.xl('list', '-l', '1').stdout) as { config: Libxl }[])[0]!.config;
    const r = real.json as Libxl;
    for (const c of [r, fake]) {
      expect(c.c_info.type).toBe('pvh');
      expect(c.b_info.kernel).toBe(kernel);
      expect(c.b_info.cmdline).toBe(`vfs.root.mountfrom=${PVH_ROOT_MOUNTFROM},boot_verbose=YES`);
      expect(c.b_info).not.toHaveProperty('type.hvm');
      expect(c.b_info).not.toHaveProperty('ramdisk');
      expect(c.disks.map((d) => [d.vdev, d.is_cdrom ?? 0, d.readwrite ?? 0])).toEqual([
        ['xvda', 0, 1],
        ['xvdb', 0, 0],
      ]);
    }
  });

  it('a PVH config without kernel= is refused by both with the same message', () => {
    const path = cfg('name = "fbxen-nokernel"\ntype = "pvh"\nmemory = 256\n');
    const real = xlDryRun(path);
    expect(real.status).not.toBe(0);
    expect(real.stderr).toContain('Neither kernel nor bootloader specified');
    const h = fakeHost();
    const fake = h.xl('create', '-q', path);
    expect(fake.status).not.toBe(0);
    expect(fake.stderr).toContain('Neither kernel nor bootloader specified');
  });
});

describe('what only a running xl shows (fake xl, SIMULATION)', () => {
  it('a kernel file that is not there fails the build (xc_dom_kernel_file) and makes no domain', () => {
    const h = fakeHost();
    const r = h.xl('create', '-q', cfg(pvhConfig(join(work, 'missing-kernel'))));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/failed to open file '.*missing-kernel': No such file or directory[\s\S]*xc_dom_kernel_file failed/);
    expect(h.xl('list').stdout).not.toContain('fbxen-pvh');
  });

  it('a PVH domain has only the PV console: -t pv attaches, and -t serial falls back to it as xenconsole does', () => {
    // Xen 4.17 tools/console/client/main.c: no serial/N/tty in xenstore (no QEMU) → type = CONSOLE_PV
    for (const type of ['pv', 'serial']) {
      const h = fakeHost();
      writeFileSync(join(h.state, 'guest.txt'), 'xc0 says hello\n@poweroff\n');
      const kernel = join(work, `kernel2-${type}`);
      writeFileSync(kernel, 'ELF stand-in');
      expect(h.xl('create', '-q', '-p', cfg(pvhConfig(kernel))).status).toBe(0);
      const con = h.xl('console', '-t', type, '1');
      expect(con.stderr).toBe('');
      expect(con.status).toBe(0);
      expect(con.stdout).toContain('xc0 says hello');
    }
  });
});

describe('XlDriver on a PVH domain of the fake xl (SIMULATION), with the real runner', () => {
  it('migrationRoute reads the type; the console is attached with -t pv before and after a live migration', async () => {
    const h = fakeHost();
    writeFileSync(join(h.state, 'guest.txt'), 'xc0 line\n@hang\n');
    const kernel = join(work, 'kernel3');
    writeFileSync(kernel, 'ELF stand-in');
    expect(h.xl('create', '-q', cfg(pvhConfig(kernel))).status).toBe(0);
    const commands: CommandRecord[] = [];
    const env = { ...process.env, PATH: `${FAKE}:${process.env.PATH ?? ''}`, FAKE_XL_STATE: h.state };
    const driver = new XlDriver({ runner: createExecaRunner({ onCommand: (r) => commands.push(r) }), env, backTo: 'here' });
    expect(await driver.migrationRoute('fbxen-pvh', 'live', 'localhost')).toEqual({ origin: 'localhost', destination: 'localhost', guestType: 'pvh' });
    let text = '';
    const sink = new Writable({ write: (c: Buffer, _e, cb) => ((text += c.toString()), cb()) });
    const where = (await driver.locate('fbxen-pvh'))!;
    await driver.attachConsole({ name: where.name, id: where.id, host: where.host }, sink);
    const out = await driver.migrate({ name: where.name, id: where.id, host: where.host }, 'localhost', 30_000);
    await driver.attachConsole({ name: out.where!.name, id: out.where!.id, host: out.where!.host }, sink);
    for (let i = 0; i < 300 && (text.match(/xc0 line/g) ?? []).length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    await driver.close();
    expect((text.match(/xc0 line/g) ?? []).length).toBe(2);
    // each inside the terminal wrapper (xl-commands.ts CONSOLE_ON_A_TERMINAL), as the real xenconsole needs
    const consoles = commands.map((c) => /fbxen-console (xl console .*)$/.exec(c.command)?.[1]).filter((c) => c !== undefined);
    expect(consoles).toEqual(['xl console -t pv 1', 'xl console -t pv 2']);
  });
});
