/**
 * An XVA writer (xapi.md §6): an uncompressed tar whose first member is ova.xml (one XML-RPC <value>
 * with version + objects), followed by the disk as `Ref:002/<8 digits>` 1 MiB chunks, each followed
 * by its `.checksum` member (SHA-1, 40 lower-case hex digits). All-zero chunks are left out (xapi
 * zero-fills gaps using the first chunk's length); the first and the last chunk are always written,
 * and the last one is short when the disk is not a whole number of MiB, exactly as xapi's exporter
 * does, so the VDI's virtual_size is the raw size.
 *
 * The VM: HVM, BIOS boot order "dc", the disk as a bootable VBD 0 (blkfront once FreeBSD's PV driver
 * attaches), an empty CD drive at userdevice 3, one VIF on the pool's eth0 network (matched by name,
 * then by bridge xenbr0, on import). Field coverage follows Xen Orchestra's templates, which import on
 * XCP-ng; missing fields without a datamodel default would make the import fail. ova.xml is written
 * compact (no whitespace between tags), as xapi's own exporter writes it.
 */
import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { InputError } from '../errors.js';
import { dataTester, type ByteRanges } from '../util/ranges.js';
import { encodeXmlRpcValueDocument, XmlRpcDouble, type XapiValue } from '../toolstack/xapi/xmlrpc.js';
import { HVM_PLATFORM } from '../toolstack/xapi/records.js';
import { formatUuid, uuidBytesFromSeed } from './vhd.js';
import { readRawFully } from './raw-image.js';

export const XVA_CHUNK_SIZE = 1024 * 1024;
const TAR_BLOCK = 512;
const NULL_REF = 'OpaqueRef:NULL';
/** Low on purpose: import fails with IMPORT_INCOMPATIBLE_VERSION when the file claims a newer xapi. */
const XAPI_VERSION = { major: 1, minor: 20 } as const;

export interface XvaOptions {
  name: string;
  vcpus: number;
  memoryMiB: number;
  timestamp: number;
  seed: string;
  /** Where the raw image holds data (the build's record); chunks outside are holes and are not read. */
  ranges?: ByteRanges;
}

const IDS = { vm: 'Ref:000', sr: 'Ref:001', vdi: 'Ref:002', diskVbd: 'Ref:003', cdVbd: 'Ref:004', network: 'Ref:005', vif: 'Ref:006' } as const;

function uuid(seed: string, purpose: string): string {
  return formatUuid(uuidBytesFromSeed(seed, `xva:${purpose}`));
}

const EPOCH_DATETIME = '19700101T00:00:00Z';

/** The ova.xml value for one VM with one disk of `diskBytes`. Exported for tests and golden files. */
export function buildOvaValue(diskBytes: number, o: XvaOptions): XapiValue {
  if (!Number.isSafeInteger(o.vcpus) || o.vcpus < 1) throw new InputError(`vcpus must be a positive integer, got ${o.vcpus}`, { hint: 'pass --vcpus 1 or more' });
  if (!Number.isSafeInteger(o.memoryMiB) || o.memoryMiB < 64) throw new InputError(`memory must be at least 64 MiB, got ${o.memoryMiB}`, { hint: 'pass --memory 256 or more (MiB)' });
  const memory = String(o.memoryMiB * 1024 * 1024);
  const common = { allowed_operations: [], current_operations: {} };
  const vm: Record<string, XapiValue> = {
    uuid: uuid(o.seed, 'vm'),
    name_label: o.name,
    name_description: 'FreeBSD image built by fbxen',
    power_state: 'Halted',
    ...common,
    user_version: '1',
    is_a_template: false,
    is_default_template: false,
    is_a_snapshot: false,
    snapshot_of: NULL_REF,
    snapshots: [],
    snapshot_time: EPOCH_DATETIME,
    transportable_snapshot_id: '',
    snapshot_info: {},
    snapshot_metadata: '',
    parent: NULL_REF,
    children: [],
    suspend_VDI: NULL_REF,
    suspend_SR: NULL_REF,
    resident_on: NULL_REF,
    affinity: NULL_REF,
    domid: '-1',
    domarch: '',
    memory_overhead: '0',
    memory_target: memory,
    memory_static_max: memory,
    memory_dynamic_max: memory,
    memory_dynamic_min: memory,
    memory_static_min: memory,
    VCPUs_params: {},
    VCPUs_max: String(o.vcpus),
    VCPUs_at_startup: String(o.vcpus),
    actions_after_shutdown: 'destroy',
    actions_after_reboot: 'restart',
    actions_after_crash: 'restart',
    consoles: [],
    VIFs: [IDS.vif],
    VBDs: [IDS.diskVbd, IDS.cdVbd],
    crash_dumps: [],
    VTPMs: [],
    VUSBs: [],
    VGPUs: [],
    attached_PCIs: [],
    PV_bootloader: '',
    PV_kernel: '',
    PV_ramdisk: '',
    PV_args: '',
    PV_bootloader_args: '',
    PV_legacy_args: '',
    HVM_boot_policy: 'BIOS order',
    HVM_boot_params: { order: 'dc', firmware: 'bios' },
    HVM_shadow_multiplier: new XmlRpcDouble(1),
    domain_type: 'hvm',
    platform: { ...HVM_PLATFORM, secureboot: 'false' },
    PCI_bus: '',
    other_config: { mac_seed: uuid(o.seed, 'mac_seed'), fbxen: 'true' },
    xenstore_data: {},
    last_boot_CPU_flags: {},
    last_booted_record: '',
    recommendations: '',
    ha_always_run: false,
    ha_restart_priority: '',
    tags: ['fbxen'],
    blocked_operations: {},
    metrics: NULL_REF,
    guest_metrics: NULL_REF,
    blobs: {},
    is_control_domain: false,
    is_snapshot_from_vmpp: false,
    is_vmss_snapshot: false,
    order: '0',
    start_delay: '0',
    shutdown_delay: '0',
    version: '0',
    generation_id: '',
    hardware_platform_version: '0',
    has_vendor_device: false,
    requires_reboot: false,
    reference_label: '',
    NVRAM: {},
  };
  const sr = {
    uuid: uuid(o.seed, 'sr'),
    name_label: 'Local storage',
    name_description: '',
    VDIs: [IDS.vdi],
    content_type: 'user',
    type: 'ext',
    shared: false,
    other_config: {},
    sm_config: {},
    tags: [],
  };
  const vdi = {
    uuid: uuid(o.seed, 'vdi'),
    name_label: `${o.name} disk0`,
    name_description: 'fbxen boot disk',
    SR: IDS.sr,
    VBDs: [IDS.diskVbd],
    virtual_size: String(diskBytes),
    physical_utilisation: String(diskBytes),
    type: 'user',
    sharable: false,
    read_only: false,
    other_config: {},
    sm_config: {},
    xenstore_data: {},
    storage_lock: false,
    location: '',
    managed: true,
    missing: false,
    parent: NULL_REF,
    is_a_snapshot: false,
    snapshot_of: NULL_REF,
    snapshots: [],
    snapshot_time: EPOCH_DATETIME,
    tags: [],
    allow_caching: false,
    on_boot: 'persist',
    metadata_of_pool: NULL_REF,
    metadata_latest: false,
    cbt_enabled: false,
    ...common,
    crash_dumps: [],
  };
  const vbd = (id: 'disk' | 'cd') => ({
    uuid: uuid(o.seed, `vbd-${id}`),
    VM: IDS.vm,
    VDI: id === 'disk' ? IDS.vdi : NULL_REF,
    device: '',
    userdevice: id === 'disk' ? '0' : '3',
    bootable: id === 'disk',
    mode: id === 'disk' ? 'RW' : 'RO',
    type: id === 'disk' ? 'Disk' : 'CD',
    unpluggable: true,
    storage_lock: false,
    empty: id === 'cd',
    other_config: {},
    currently_attached: false,
    status_code: '0',
    status_detail: '',
    runtime_properties: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    qos_supported_algorithms: [],
    metrics: NULL_REF,
    ...common,
  });
  const network = {
    uuid: uuid(o.seed, 'network'),
    name_label: 'Pool-wide network associated with eth0',
    name_description: '',
    bridge: 'xenbr0',
    VIFs: [IDS.vif],
    PIFs: [],
    MTU: '1500',
    other_config: {},
    tags: [],
    blobs: {},
    ...common,
  };
  const vif = {
    uuid: uuid(o.seed, 'vif'),
    device: '0',
    network: IDS.network,
    VM: IDS.vm,
    MAC: '',
    MAC_autogenerated: true,
    MTU: '1500',
    other_config: {},
    currently_attached: false,
    status_code: '0',
    status_detail: '',
    runtime_properties: {},
    qos_algorithm_type: '',
    qos_algorithm_params: {},
    qos_supported_algorithms: [],
    metrics: NULL_REF,
    locking_mode: 'network_default',
    ipv4_allowed: [],
    ipv6_allowed: [],
    ...common,
  };
  const date = new Date(o.timestamp * 1000).toISOString().slice(0, 10);
  return {
    version: {
      hostname: 'fbxen',
      date,
      product_version: '8.2.1',
      product_brand: 'fbxen',
      build_number: 'fbxen',
      xapi_major: String(XAPI_VERSION.major),
      xapi_minor: String(XAPI_VERSION.minor),
      export_vsn: '2',
    },
    objects: [
      { class: 'VM', id: IDS.vm, snapshot: vm },
      { class: 'SR', id: IDS.sr, snapshot: sr },
      { class: 'VDI', id: IDS.vdi, snapshot: vdi },
      { class: 'VBD', id: IDS.diskVbd, snapshot: vbd('disk') },
      { class: 'VBD', id: IDS.cdVbd, snapshot: vbd('cd') },
      { class: 'network', id: IDS.network, snapshot: network },
      { class: 'VIF', id: IDS.vif, snapshot: vif },
    ],
  };
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0') + '\0';
}

/** A POSIX ustar header for a regular file (owner root, mode 0644, the given mtime). */
export function tarHeader(name: string, size: number, mtime: number): Buffer {
  if (Buffer.byteLength(name) > 100) throw new Error(`tar member name too long: ${name}`);
  const h = Buffer.alloc(TAR_BLOCK);
  h.write(name, 0, 'utf8');
  h.write(octal(0o644, 8), 100, 'latin1');
  h.write(octal(0, 8), 108, 'latin1');
  h.write(octal(0, 8), 116, 'latin1');
  h.write(octal(size, 12), 124, 'latin1');
  h.write(octal(Math.max(0, Math.floor(mtime)), 12), 136, 'latin1');
  h.write('        ', 148, 'latin1'); // checksum field counts as spaces while summing
  h.write('0', 156, 'latin1');
  h.write('ustar\0', 257, 'latin1');
  h.write('00', 263, 'latin1');
  h.write('root', 265, 'latin1');
  h.write('root', 297, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(sum.toString(8).padStart(6, '0') + '\0 ', 148, 'latin1');
  return h;
}

class TarWriter {
  private position = 0;
  constructor(
    private readonly out: FileHandle,
    private readonly mtime: number,
  ) {}

  private async put(buf: Uint8Array): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.out.write(buf, done, buf.length - done, this.position + done);
      done += bytesWritten;
    }
    this.position += buf.length;
  }

  async file(name: string, data: Uint8Array): Promise<void> {
    await this.put(tarHeader(name, data.length, this.mtime));
    await this.put(data);
    const pad = (TAR_BLOCK - (data.length % TAR_BLOCK)) % TAR_BLOCK;
    if (pad) await this.put(Buffer.alloc(pad));
  }

  /** Two zero blocks, then padding to a whole 10 KiB record as tar(1) writes it. */
  async finish(): Promise<number> {
    await this.put(Buffer.alloc(2 * TAR_BLOCK));
    const record = 20 * TAR_BLOCK;
    const pad = (record - (this.position % record)) % record;
    if (pad) await this.put(Buffer.alloc(pad));
    return this.position;
  }
}

export function chunkMemberName(chunkIndex: number): string {
  return `${IDS.vdi}/${String(chunkIndex).padStart(8, '0')}`;
}

export async function writeXva(rawPath: string, outPath: string, opts: XvaOptions): Promise<{ size: number }> {
  const raw = await open(rawPath, 'r');
  let out: FileHandle | undefined;
  try {
    const diskBytes = (await raw.stat()).size;
    if (diskBytes === 0 || diskBytes % 512 !== 0) {
      throw new InputError(`raw image ${rawPath} is ${diskBytes} bytes, not a positive multiple of 512`, { hint: 'a disk image must be a whole number of 512-byte sectors; rebuild the raw image' });
    }
    const ova = encodeXmlRpcValueDocument(buildOvaValue(diskBytes, opts));
    out = await open(outPath, 'w');
    const tar = new TarWriter(out, opts.timestamp);
    await tar.file('ova.xml', Buffer.from(ova, 'utf8'));

    const chunks = Math.ceil(diskBytes / XVA_CHUNK_SIZE);
    const buf = Buffer.alloc(XVA_CHUNK_SIZE);
    const zero = Buffer.alloc(XVA_CHUNK_SIZE);
    const mayHoldData = dataTester(opts.ranges);
    for (let i = 0; i < chunks; i++) {
      const start = i * XVA_CHUNK_SIZE;
      const length = Math.min(XVA_CHUNK_SIZE, diskBytes - start);
      const firstOrLast = i === 0 || i === chunks - 1;
      const hole = !mayHoldData(start, start + length);
      if (hole && !firstOrLast) continue;
      if (hole) buf.fill(0, 0, length);
      else await readRawFully(raw, buf, length, start);
      const data = buf.subarray(0, length);
      if (!firstOrLast && data.equals(zero.subarray(0, length))) continue;
      const name = chunkMemberName(i);
      await tar.file(name, data);
      await tar.file(`${name}.checksum`, Buffer.from(createHash('sha1').update(data).digest('hex'), 'latin1'));
    }
    const size = await tar.finish();
    await out.truncate(size);
    return { size };
  } finally {
    await out?.close();
    await raw.close();
  }
}
