/**
 * The xl driver's parsers, against the real xl's JSON (peer sample produced by Debian's xl 4.17 dry run)
 * and the fake xl; and the fake xl itself (a SIMULATION), checked against what the real xl prints and does.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { EnvironmentError, ToolstackError } from '../../src/core/errors.js';
import { parseXlHostInfo, parseXlInfo, parseXlList, parseXlListLong } from '../../src/core/toolstack/xl/parse.js';
import { macForName, renderXlConfig, uuidForName } from '../../src/core/toolstack/xl/xl-config.js';
import { XlCommands } from '../../src/core/toolstack/xl/xl-commands.js';
import { xlDryRun } from '../support/xl-preload/real-xl.js';

const FAKE = join(import.meta.dirname, '../support/fake-xl');

function fakeHost(scenario: Record<string, unknown> = {}) {
  const state = mkdtempSync(join(tmpdir(), 'fbxen-fakexl-'));
  writeFileSync(join(state, 'scenario.json'), JSON.stringify(scenario));
  const env = { ...process.env, PATH: `${FAKE}:${process.env.PATH ?? ''}`, FAKE_XL_STATE: state };
  const xl = (...args: string[]) => spawnSync('xl', args, { env, encoding: 'utf8' });
  return { state, env, xl, driver: new XlCommands(createExecaRunner(), { env }) };
}

function cfgFile(dir: string, name: string): string {
  const p = join(dir, `${name}.cfg`);
  // the disk file exists: the fake's restoring and receiving xl stat it, as libxl does
  const disk = join(dir, `${name}.raw`);
  writeFileSync(disk, '');
  writeFileSync(
    p,
    renderXlConfig({ name, uuid: uuidForName(name), mac: macForName(name), vcpus: 2, memoryMiB: 512, image: { path: disk, format: 'raw' }, cdrom: { kind: 'empty' }, bridge: 'xenbr0' }),
  );
  return p;
}

describe('parsers', () => {
  it('reads `xl info`', () => {
    const info = parseXlHostInfo('host                   : dom0\nxen_version            : 4.17.7\ntotal_memory           : 16384\nfree_memory            : 900\nnr_cpus                : 8\nxen_commandline        : dom0_mem=2048M,max:2048M\n');
    expect(info).toEqual({ host: 'dom0', xen_version: '4.17.7', total_memory: 16384, free_memory: 900, nr_cpus: 8, xen_commandline: 'dom0_mem=2048M,max:2048M' });
    expect(parseXlInfo('xen_commandline        : a=b : c')).toEqual({ xen_commandline: 'a=b : c' });
    expect(() => parseXlHostInfo('host : x\n')).toThrow(ToolstackError);
  });

  it('reads `xl list -l` entries whose config is what the real xl 4.17 produces', () => {
    const real = JSON.parse(readFileSync('/work/shared/design/peer-samples/fbsd14-hvm.xl-dryrun.json', 'utf8')) as unknown;
    const parsed = parseXlListLong(JSON.stringify([{ domid: 7, config: real }]));
    expect(parsed[0]).toMatchObject({ domid: 7, config: { c_info: { name: 'fbsd14-test', type: 'hvm' }, disks: [{ vdev: 'xvda' }, { vdev: 'hdc', is_cdrom: 1 }] } });
    expect(parseXlListLong('')).toEqual([]);
    expect(() => parseXlListLong('(domain (domid 1))')).toThrow(/did not print JSON/);
    expect(() => parseXlListLong('[{"domid":"x"}]')).toThrow(ToolstackError);
  });

  it('reads the `xl list` table', () => {
    const text = 'Name                                        ID   Mem VCPUs\tState\tTime(s)\nDomain-0                                     0  2048     4     r-----     123.4\nfbxen-a                                      5  1024     2     -b----       9.1\nfbxen-b                                      6  1024     2     ----c-       1.0\n';
    expect(parseXlList(text)).toEqual([
      { name: 'Domain-0', domid: 0, memMiB: 2048, vcpus: 4, state: 'r-----' },
      { name: 'fbxen-a', domid: 5, memMiB: 1024, vcpus: 2, state: '-b----' },
      { name: 'fbxen-b', domid: 6, memMiB: 1024, vcpus: 2, state: '----c-' },
    ]);
  });
});

describe('parser properties', () => {
  const name = fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$/);
  it('`xl list` rows in the real printf layout ("%-40s %5d %5lu %5d     %s %8.1f") read back exactly', () => {
    const state = fc.constantFrom('r-----', '-b----', '--p---', '---s--', '----c-', '-----d', '------');
    const row = fc.record({ name, domid: fc.integer({ min: 0, max: 32767 }), memMiB: fc.integer({ min: 0, max: 99999 }), vcpus: fc.integer({ min: 1, max: 512 }), state, time: fc.double({ min: 0, max: 1e6, noNaN: true }) });
    fc.assert(
      fc.property(fc.array(row, { maxLength: 8 }), (rows) => {
        const text = ['Name                                        ID   Mem VCPUs\tState\tTime(s)', ...rows.map((r) => `${r.name.padEnd(40)} ${String(r.domid).padStart(5)} ${String(r.memMiB).padStart(5)} ${String(r.vcpus).padStart(5)}     ${r.state} ${r.time.toFixed(1).padStart(8)}`)].join('\n');
        expect(parseXlList(`${text}\n`)).toEqual(rows.map(({ time: _t, ...r }) => r));
      }),
    );
  });

  it('`xl info` lines read back whatever the padding and the value', () => {
    const key = fc.stringMatching(/^[a-z_][a-z0-9_]{0,22}$/);
    const value = fc.string({ unit: fc.constantFrom(...'abc XYZ 0123:=,./-'), maxLength: 40 }).map((v) => v.trim());
    fc.assert(
      fc.property(fc.dictionary(key, value, { maxKeys: 10 }), fc.integer({ min: 0, max: 10 }), (dict, pad) => {
        const text = Object.entries(dict).map(([k, v]) => `${k.padEnd(23 + pad)}: ${v}`).join('\n');
        expect(parseXlInfo(text)).toEqual(dict);
      }),
    );
  });
});

describe('the fake xl models the real one (SIMULATION)', () => {
  it('create stores what the real parser reads from the same config (disks, nics, memory)', () => {
    const h = fakeHost();
    const cfg = cfgFile(h.state, 'fbxen-model');
    const real = xlDryRun(cfg).json as { disks: unknown[]; nics: unknown[]; b_info: { max_memkb: number } };
    expect(h.xl('create', '-q', cfg).status).toBe(0);
    const [dom] = parseXlListLong(h.xl('list', '-l').stdout);
    expect(dom!.config.disks).toEqual(real.disks);
    expect(dom!.config.nics).toEqual(real.nics);
    expect((dom!.config.b_info as { max_memkb: number }).max_memkb).toBe(real.b_info.max_memkb);
  });

  it('prints the real error texts for unknown domains and refuses duplicate names', async () => {
    const h = fakeHost();
    const r = h.xl('domid', 'nope');
    expect(r.status).toBe(1);
    expect(r.stderr).toBe("Can't get domid of domain name 'nope', maybe this domain does not exist.\n");
    expect(await h.driver.domid('nope')).toBeUndefined();
    const cfg = cfgFile(h.state, 'fbxen-dup');
    expect(h.xl('create', cfg).status).toBe(0);
    const again = h.xl('create', cfg);
    expect(again.status).toBe(1);
    expect(again.stderr).toContain('already exists');
    // destroy of a gone domid fails in real xl (rc=-21); the driver treats it as already destroyed.
    expect(h.xl('destroy', '1').status).toBe(0);
    expect(h.xl('destroy', '1').stderr).toContain('destroy failed (rc=-21)');
    await expect(h.driver.destroy(1)).resolves.toBeUndefined();
  });

  it('create with a disk file that is not there fails as libxl does (a domid taken) and makes no domain', () => {
    const h = fakeHost();
    const cfg = cfgFile(h.state, 'fbxen-nodisk');
    rmSync(join(h.state, 'fbxen-nodisk.raw'));
    const r = h.xl('create', cfg);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(`libxl: error: libxl_device.c:455:libxl__device_disk_set_backend: Disk vdev=xvda failed to stat: ${join(h.state, 'fbxen-nodisk.raw')}: No such file or directory\n`);
    expect(r.stderr).toContain('initiate_domain_create: Domain 1:Unable to set disk defaults for disk 0');
    expect(h.xl('list').stdout).not.toContain('fbxen-nodisk');
    writeFileSync(join(h.state, 'fbxen-nodisk.raw'), '');
    expect(h.xl('create', '-q', cfg).status).toBe(0);
    expect(h.xl('domid', 'fbxen-nodisk').stdout.trim()).toBe('2');
  });

  it('not a dom0: the driver turns xl info failing into an environment error', async () => {
    const h = fakeHost({ notDom0: true });
    await expect(h.driver.info()).rejects.toBeInstanceOf(EnvironmentError);
  });

  it('domids only grow; save/restore and migrate give the domain a new domid, and the console reattaches', async () => {
    const h = fakeHost();
    writeFileSync(join(h.state, 'guest.txt'), 'hello from the guest\n@hang\n');
    const cfg = cfgFile(h.state, 'fbxen-mig');
    h.xl('create', cfg);
    expect(await h.driver.domid('fbxen-mig')).toBe(1);
    await h.driver.save(1, join(h.state, 'save.img'));
    expect(readFileSync(join(h.state, 'save.img')).subarray(0, 32).toString('latin1')).toBe('Xen saved domain, xl format\n \0 \r');
    expect(await h.driver.domid('fbxen-mig')).toBeUndefined();
    await h.driver.restore(join(h.state, 'save.img'));
    expect(await h.driver.domid('fbxen-mig')).toBe(2);
    await h.driver.migrateLocal(2);
    expect(await h.driver.domid('fbxen-mig')).toBe(3);

    const att = h.driver.console(3);
    let out = '';
    att.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const t0 = Date.now();
    while (!out.includes('hello') && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    expect(out).toBe('hello from the guest\r\n');
    att.detach(); // like xenconsole, EOF on stdin ends the console client
    await expect(att.done).resolves.toMatchObject({ exitCode: 0 });
  });

  it('the console client ends when the domain is destroyed', async () => {
    const h = fakeHost();
    writeFileSync(join(h.state, 'guest.txt'), '@hang\n');
    const child = spawn('xl', ['create', '-c', cfgFile(h.state, 'fbxen-con')], { env: h.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    const t0 = Date.now();
    while (!h.xl('domid', 'fbxen-con').stdout && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
    execFileSync('xl', ['destroy', 'fbxen-con'], { env: h.env });
    expect(await exited).toBe(0);
  });
});
