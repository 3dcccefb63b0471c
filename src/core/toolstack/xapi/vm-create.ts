/**
 * The VM's life up to "started", for a run and for its --dry-run plan alike:
 * - an .xva is imported whole (PUT /import); a .vhd or raw disk is uploaded into a new VDI
 *   (VDI.create + PUT /import_raw_vdi) and the VM is cloned from the "Other install media" template;
 * - the CD: ISO SRs are usually read-only shares, so a local ISO (the fbxen CD with the run nonce, or
 *   the user's) is uploaded into a VDI in the (writable) target SR and put in the CD drive. Current
 *   xapi accepts any VDI in a CD VBD; older xapi refuses one outside an ISO SR with VDI_IS_NOT_ISO, and
 *   then the same VDI goes in as a small second disk (userdevice 1) (docs/xapi.md);
 * - platform:hvm_serial = the console listener's tcp: target, so QEMU connects out to fbxen;
 * - VM.start, then where it runs.
 */
import { existsSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { basename, resolve } from 'node:path';
import { InputError, ToolstackError } from '../../errors.js';
import type { GuestSpec } from '../types.js';
import { ignoreMissingKey, NULL_REF, PlanRecorder, str, type Api, type Rec } from './api.js';
import type { CreatedObjects } from './created.js';
import { XapiError, xapiHint } from './errors.js';
import type { PoolChoice } from './pool.js';
import { expectShape, HostRecord, HVM_PLATFORM, RefList, VbdRecord } from './records.js';
import type { XapiValue } from './xmlrpc.js';

export type XapiImageKind = 'xva' | 'vhd' | 'raw';
/** fbxen: the fbxen CD (the run nonce); iso-file: the user's local ISO; iso-sr: an ISO library's by name. */
export type XapiCdKind = 'fbxen' | 'iso-file' | 'iso-sr' | 'empty';
export type NonceChannel = 'cd' | 'second-disk' | 'iso-sr' | 'none';

const TEMPLATE = 'Other install media';
const CD_USERDEVICE = '3';

export interface VmBuild {
  name: string;
  run: string;
  vcpus: number;
  memoryMiB: number;
  /** --network was given: an XVA's own VIFs are replaced */
  network?: string | undefined;
  image: { kind: XapiImageKind; path: string; size: number; virtualSize: number };
  /** path: the ISO file (fbxen, iso-file); name: the ISO library's VDI (iso-sr) */
  cd: { kind: XapiCdKind; path?: string | undefined; name?: string | undefined };
  timeoutMs: number;
  consoleTarget: string;
  pool: PoolChoice;
}

export interface VmContext {
  api: Api;
  created: CreatedObjects;
  step: <T>(title: string, fn: () => Promise<T>) => Promise<T>;
  warn: (message: string) => void;
  log?: ((line: string) => void) | undefined;
}

export interface StartedVm {
  ref: string;
  uuid: string;
  host: { uuid: string; name: string; address: string } | null;
  nonceChannel: NonceChannel;
}

/** What a run learnt about the pool and its VM (run.json's "xapi"). */
export interface XapiPoolFacts {
  pool: string;
  master: { name: string; address: string };
  host: { uuid: string; name: string; address: string } | null;
  sr: { uuid: string; name: string; type: string; shared: boolean };
  network: { uuid: string; name: string; bridge: string };
  vm: { uuid: string; ref: string };
  nonceChannel: NonceChannel;
}

export function poolFacts(p: PoolChoice, vm: StartedVm): XapiPoolFacts {
  return {
    pool: p.poolName,
    master: p.master,
    host: vm.host,
    sr: { uuid: str(p.srRec['uuid']), name: str(p.srRec['name_label']), type: str(p.srRec['type']), shared: p.srRec['shared'] === true },
    network: { uuid: str(p.netRec['uuid']), name: str(p.netRec['name_label']), bridge: str(p.netRec['bridge']) },
    vm: { uuid: vm.uuid, ref: vm.ref },
    nonceChannel: vm.nonceChannel,
  };
}

/**
 * The toolstack-neutral guest as this module builds it. The CD: the fbxen CD when the flow says so; a
 * local file; else the name of an ISO in one of the pool's ISO libraries.
 */
export function vmBuild(guest: GuestSpec, o: { run: string; fbxenCd?: boolean | undefined; cwd?: string | undefined; timeoutMs?: number | undefined }, consoleTarget: string, pool: PoolChoice): VmBuild {
  let cd: VmBuild['cd'];
  if (guest.cdrom.kind === 'empty') cd = { kind: 'empty' };
  else if (o.fbxenCd) cd = { kind: 'fbxen', path: guest.cdrom.path };
  else {
    const local = resolve(o.cwd ?? process.cwd(), guest.cdrom.path);
    cd = existsSync(local) ? { kind: 'iso-file', path: local } : { kind: 'iso-sr', name: guest.cdrom.path };
  }
  return {
    name: guest.name,
    run: o.run,
    vcpus: guest.vcpus,
    memoryMiB: guest.memoryMiB,
    network: guest.network,
    image: { kind: guest.image.format as XapiImageKind, path: guest.image.path, size: guest.image.size, virtualSize: guest.image.virtualSize },
    cd,
    timeoutMs: o.timeoutMs ?? 600_000,
    consoleTarget,
    pool,
  };
}

export async function createAndStartVm(b: VmBuild, c: VmContext): Promise<StartedVm> {
  const { api, created } = c;
  const plan = api instanceof PlanRecorder ? api : undefined;
  const { sr, network } = b.pool;

  const createVdi = async (label: string, size: number, purpose: string): Promise<string> => {
    const vdi = str(
      await api.call('VDI.create', {
        name_label: label,
        name_description: `fbxen ${purpose} (run ${b.run})`,
        SR: sr,
        virtual_size: size,
        type: 'user',
        sharable: false,
        read_only: false,
        other_config: { fbxen_run: b.run },
        xenstore_data: {},
        sm_config: {},
        tags: ['fbxen'],
      }),
    );
    created.vdis.push(vdi);
    return vdi;
  };

  let vm: string;
  let cdVbd: string | undefined;
  if (b.image.kind === 'xva') {
    vm = await c.step(`Import ${basename(b.image.path)} (XVA, ${b.image.size} bytes)`, async () => {
      const result = await api.putFile('/import', { sr_id: sr }, b.image.path, `import ${b.name}`, b.timeoutMs);
      const refs = Array.isArray(result) ? result.map(str) : [str(result)];
      const ref = refs[0];
      if (!ref) throw new ToolstackError('the XVA import finished without a VM', { hint: 'check the task in XenCenter; the XVA may be damaged (rebuild it)' });
      created.vm = ref;
      created.imported = true;
      return ref;
    });
    await api.call('VM.set_name_label', vm, b.name);
    await api.call('VM.add_to_other_config', vm, 'fbxen_run', b.run);
    await sizeVm(api, vm, b, plan !== undefined);
    if (b.network) {
      const vifsAnswer = await api.call('VM.get_VIFs', vm);
      const vifs = plan ? ['<VIF#imported>'] : expectShape(RefList, vifsAnswer, 'VM.get_VIFs');
      for (const vif of vifs) await api.call('VIF.destroy', vif);
      await createVif(api, vm, network);
    }
    const vbdsAnswer = await api.call('VM.get_VBDs', vm);
    if (plan) {
      plan.note('take the CD drive (userdevice 3) the XVA brought: VBD.get_record for each VBD, type "CD"');
      cdVbd = '<VBD#imported-cd>';
    } else {
      for (const vbd of expectShape(RefList, vbdsAnswer, 'VM.get_VBDs')) {
        const rec = expectShape(VbdRecord, await api.call('VBD.get_record', vbd), 'VBD.get_record');
        if (rec['type'] === 'CD') cdVbd = vbd;
      }
    }
  } else {
    const diskVdi = await c.step(`Upload the disk (${b.image.kind}, ${b.image.size} bytes)`, async () => {
      const vdi = await createVdi(`${b.name} disk0`, b.image.virtualSize, 'boot disk');
      await api.putFile('/import_raw_vdi', { vdi, format: b.image.kind }, b.image.path, `upload ${b.name} disk0`, b.timeoutMs);
      return vdi;
    });
    vm = await c.step(`Create ${b.name} from "${TEMPLATE}"`, async () => {
      const templates = (await api.call('VM.get_by_name_label', TEMPLATE)) as XapiValue;
      let template = plan ? '<template>' : '';
      if (!plan) {
        for (const t of Array.isArray(templates) ? templates.map(str) : []) {
          if ((await api.call('VM.get_is_a_template', t)) === true) template = t;
        }
        if (!template) throw new ToolstackError(`the pool has no "${TEMPLATE}" template`, { hint: 'this template ships with every XenServer/XCP-ng; restore the default templates (xe-install-templates) or check the user can see them' });
      }
      const ref = str(await api.call('VM.clone', template, b.name));
      created.vm = ref;
      // No disks from the template's provision XML: ours is the uploaded one.
      await ignoreMissingKey(api.call('VM.remove_from_other_config', ref, 'disks'));
      await api.call('VM.provision', ref);
      await api.call('VM.add_to_other_config', ref, 'fbxen_run', b.run);
      await api.call('VM.set_name_description', ref, `fbxen run ${b.run}`);
      await api.call('VM.set_HVM_boot_policy', ref, 'BIOS order');
      await api.call('VM.set_HVM_boot_params', ref, { order: 'dc', firmware: 'bios' });
      await api.call('VM.set_platform', ref, { ...HVM_PLATFORM });
      await sizeVm(api, ref, b, plan !== undefined);
      await api.call('VBD.create', vbdRecord(ref, diskVdi, '0', 'Disk'));
      await createVif(api, ref, network);
      cdVbd = str(await api.call('VBD.create', vbdRecord(ref, NULL_REF, CD_USERDEVICE, 'CD')));
      return ref;
    });
  }
  if (!cdVbd) throw new ToolstackError(`VM ${b.name} has no CD drive`, { hint: 'rebuild the XVA with this fbxen (it adds an empty CD at userdevice 3)' });
  const drive = cdVbd;

  // The nonce: on the fbxen CD (or the user's ISO), in the CD drive if xapi allows, else as a second disk.
  let nonceChannel: NonceChannel = 'none';
  if (b.cd.kind === 'iso-sr') {
    const iso = b.cd.name ?? '';
    await c.step(`Insert ${iso} from an ISO library`, async () => {
      const named = plan ? ['<VDI iso>'] : expectShape(RefList, await api.call('VDI.get_by_name_label', iso), 'VDI.get_by_name_label');
      // Only ISOs from ISO libraries: a disk VDI with the same name must never land in the CD drive.
      const hits: string[] = [];
      for (const vdi of named) {
        if (plan || str((await api.call('SR.get_content_type', await api.call('VDI.get_SR', vdi))) as XapiValue) === 'iso') hits.push(vdi);
      }
      if (!hits.length) throw new InputError(`no ISO named ${JSON.stringify(iso)} in the pool's ISO libraries, and no such local file`, { hint: 'pass a local ISO file, or the exact name of an ISO in an ISO SR (xe cd-list)' });
      await api.call('VBD.insert', drive, hits[0]!);
      nonceChannel = 'iso-sr';
    });
  } else if (b.cd.kind === 'fbxen' || b.cd.kind === 'iso-file') {
    const isoPath = b.cd.path ?? '';
    // The flow made the fbxen CD before create; a plan names it where it goes in.
    const title = b.cd.kind === 'fbxen' ? (plan ? 'Make the fbxen CD and put it in the CD drive' : 'Put the fbxen CD in the CD drive') : `Put ${basename(isoPath)} in the CD drive`;
    nonceChannel = await c.step(title, async () => {
      if (plan && b.cd.kind === 'fbxen') plan.note(`xorriso writes the fbxen CD (run ${b.run}) to ${isoPath}`);
      const isoSize = plan ? 0 : (await stat(isoPath)).size;
      const cdVdiSize = Math.max(2 * 1024 * 1024, Math.ceil(isoSize / (2 * 1024 * 1024)) * 2 * 1024 * 1024);
      const vdi = await createVdi(`${b.name} fbxen-cd`, cdVdiSize, 'CD');
      await api.putFile('/import_raw_vdi', { vdi, format: 'raw' }, isoPath, `upload ${b.name} CD`, b.timeoutMs);
      try {
        await api.call('VBD.insert', drive, vdi);
        return 'cd' as const;
      } catch (err) {
        if (!(err instanceof XapiError) || err.code !== 'VDI_IS_NOT_ISO') throw err;
        c.warn('this xapi only takes ISO-library VDIs in the CD drive; the fbxen CD goes in as a second disk (userdevice 1) and the CD drive stays empty');
        c.log?.('# VDI_IS_NOT_ISO: attaching the CD image as disk 1 instead');
        await api.call('VBD.create', { ...vbdRecord(vm, vdi, '1', 'Disk'), bootable: false });
        return 'second-disk' as const;
      }
    });
    if (plan) plan.note('if VBD.insert fails with VDI_IS_NOT_ISO (older xapi): VBD.create {type: "Disk", userdevice: "1", VDI: <the CD VDI>} instead');
  }

  // The console: QEMU connects out to us.
  await ignoreMissingKey(api.call('VM.remove_from_platform', vm, 'hvm_serial'));
  await api.call('VM.add_to_platform', vm, 'hvm_serial', b.consoleTarget);
  if (plan) plan.note(`listen on ${b.consoleTarget.replace(/^tcp:/, '')} for the guest console; QEMU on the pool host connects to it`);

  await c.step(`Start ${b.name}`, async () => {
    try {
      await api.callAsync('VM.start', [vm, false, false], Math.min(b.timeoutMs, 300_000));
    } catch (err) {
      if (!(err instanceof XapiError) || err.code !== 'VM_REQUIRES_SR' || !err.params[1]) throw err;
      // The parameter is a ref: name the SR, so the user knows which --sr not to use.
      const label = str(await api.call('SR.get_name_label', err.params[1]).catch(() => ''));
      if (!label) throw err;
      throw new XapiError(err.code, err.params, err.method, { hint: xapiHint(err.code, [err.params[0] ?? '', `"${label}" (${err.params[1]})`], err.method), cause: err });
    }
  });

  // Where it runs, for the run record (migrate-test needs the host).
  let host: StartedVm['host'] = null;
  const uuid = plan ? '<uuid>' : str(await api.call('VM.get_uuid', vm));
  const hostRef = str(await api.call('VM.get_resident_on', vm));
  if (!plan && hostRef && hostRef !== NULL_REF) {
    const h = expectShape(HostRecord, await api.call('host.get_record', hostRef), 'host.get_record');
    host = { uuid: str(h['uuid']), name: str(h['name_label']), address: str(h['address']) };
  }
  return { ref: vm, uuid, host, nonceChannel };
}

/** Memory (all four limits equal), VCPUs, and halt on crash so a crash shows as "halted", not a boot loop. */
async function sizeVm(api: Api, vm: string, b: Pick<VmBuild, 'vcpus' | 'memoryMiB'>, dry: boolean): Promise<void> {
  await api.call('VM.set_actions_after_crash', vm, 'destroy');
  const bytes = String(b.memoryMiB * 1024 * 1024);
  await api.call('VM.set_memory_limits', vm, bytes, bytes, bytes, bytes);
  // VCPUs_at_startup may not exceed VCPUs_max: raise max first, lower startup first.
  const currentMax = dry ? 1 : Number(await api.call('VM.get_VCPUs_max', vm));
  if (b.vcpus >= currentMax) {
    await api.call('VM.set_VCPUs_max', vm, b.vcpus);
    await api.call('VM.set_VCPUs_at_startup', vm, b.vcpus);
  } else {
    await api.call('VM.set_VCPUs_at_startup', vm, b.vcpus);
    await api.call('VM.set_VCPUs_max', vm, b.vcpus);
  }
}

function vbdRecord(vm: string, vdi: string, userdevice: string, type: 'Disk' | 'CD'): Rec {
  const empty = vdi === NULL_REF;
  return {
    VM: vm,
    VDI: vdi,
    userdevice,
    bootable: type === 'Disk' && userdevice === '0',
    mode: type === 'CD' ? 'RO' : 'RW',
    type,
    empty,
    unpluggable: type !== 'Disk' || userdevice !== '0',
    other_config: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    device: '',
  };
}

async function createVif(api: Api, vm: string, network: string): Promise<void> {
  await api.call('VIF.create', {
    device: '0',
    network,
    VM: vm,
    MAC: '',
    MTU: 1500,
    other_config: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    locking_mode: 'network_default',
  });
}
