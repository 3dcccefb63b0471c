/**
 * SIMULATION — a XAPI test double, not XAPI. It keeps a small in-memory pool (sessions, hosts, SRs,
 * networks, VMs, VBDs, VDIs, VIFs, tasks, power states) and speaks the real wire formats over HTTP on
 * loopback: XML-RPC on POST / (and /RPC2), JSON-RPC 1.0/2.0 on POST /jsonrpc, PUT /import and
 * PUT /import_raw_vdi with tasks. Its behaviour follows xapi's documented behaviour (xapi.md), failures
 * included: HOST_IS_SLAVE from a member, SESSION_INVALID after a session is dropped, VM_BAD_POWER_STATE,
 * HANDLE_INVALID, VDI_IS_NOT_ISO on older-xapi mode, and injected failures half-way through a flow.
 *
 * The guest: when a VM starts and its platform:hvm_serial is "tcp:HOST:PORT", the simulator connects
 * there like QEMU's -serial tcp: client and writes `guestConsole(vm)`; after VM.pool_migrate it
 * connects again (the console "reattaches"), as a new QEMU on the destination host would; VM.suspend and
 * VM.resume (save-restore) stop the VM and bring it back on the first host, with a new console connection.
 */
import { randomUUID } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { decodeMethodCall, decodeValueDocument, encodeMethodResponse, type XapiValue } from '../../../src/core/toolstack/xapi/xmlrpc.js';

type Rec = Record<string, XapiValue>;
type ClassName = 'session' | 'pool' | 'host' | 'SR' | 'network' | 'VM' | 'VBD' | 'VDI' | 'VIF' | 'task';

export class SimFailure extends Error {
  constructor(
    readonly code: string,
    readonly params: string[] = [],
  ) {
    super(code);
  }
}

export interface SimOptions {
  /** Address to bind (127.0.0.1 default; a second "host" can use 127.0.0.2). */
  host?: string;
  port?: number;
  /** When set, this simulator is a pool member: logins fail with HOST_IS_SLAVE [master]. */
  slaveOf?: string;
  user?: string;
  password?: string;
  /** xapi before the CD check was dropped: VBD.create(type CD) with a non-ISO-SR VDI fails VDI_IS_NOT_ISO. */
  strictCdIso?: boolean;
  /** What the "guest" writes to its serial console once started. */
  guestConsole?: (vm: { ref: string; record: Rec; sim: XapiSim }) => string;
  /** Serve HTTPS with this key and certificate (PEM), like a real pool does on port 443. */
  tls?: { key: string; cert: string };
  /** Answer the first upload with HTTP 302 (another host sees the SR), as xapi does; the client must send it again. */
  redirectUploadsOnce?: boolean;
  /** With redirectUploadsOnce: send the upload to this origin ("http://127.0.0.1:8080") instead of back here. */
  redirectUploadsTo?: string;
  /** Seconds a task stays pending before it completes (tests of waiting). */
  taskDelayMs?: number;
}

interface Injected {
  method: string;
  code: string;
  params: string[];
  /** Fail the Nth call of this method (1-based); the default fails the next one. */
  nth: number;
  seen: number;
}

export class XapiSim {
  readonly db: Record<ClassName, Map<string, Rec>> = {
    session: new Map(),
    pool: new Map(),
    host: new Map(),
    SR: new Map(),
    network: new Map(),
    VM: new Map(),
    VBD: new Map(),
    VDI: new Map(),
    VIF: new Map(),
    task: new Map(),
  };
  /** Bytes uploaded into each VDI (by ref). */
  readonly vdiContent = new Map<string, Buffer>();
  /** Every method called, in order, for assertions. */
  readonly calls: string[] = [];
  /** Raw request bodies and URLs received, to scan for secrets. */
  readonly wire: string[] = [];
  private readonly injected: Injected[] = [];
  private server: http.Server | https.Server | undefined;
  private counter = 0;
  private eventId = 0;
  readonly opts: Required<Pick<SimOptions, 'user' | 'password'>> & SimOptions;
  consoleConnections = 0;

  constructor(opts: SimOptions = {}) {
    this.opts = { user: 'root', password: 'sim-password', ...opts };
    this.seed();
  }

  private ref(): string {
    return `OpaqueRef:${randomUUID()}`;
  }

  add(cls: ClassName, rec: Rec, ref = this.ref()): string {
    this.db[cls].set(ref, { uuid: randomUUID(), ...rec });
    this.eventId++;
    return ref;
  }

  private seed(): void {
    const host = this.add('host', { name_label: 'xcp-host-1', address: '127.0.0.1', enabled: true, API_version_major: '2', API_version_minor: '21' });
    const host2 = this.add('host', { name_label: 'xcp-host-2', address: '127.0.0.2', enabled: true, API_version_major: '2', API_version_minor: '21' });
    const local = this.add('SR', { name_label: 'Local storage', type: 'ext', content_type: 'user', shared: false, VDIs: [], PBDs: [], other_config: {} });
    const nfs = this.add('SR', { name_label: 'NFS storage', type: 'nfs', content_type: 'user', shared: true, VDIs: [], PBDs: [], other_config: {} });
    this.add('SR', { name_label: 'ISO library', type: 'iso', content_type: 'iso', shared: true, VDIs: [], PBDs: [], other_config: {} });
    this.add('pool', { name_label: 'sim-pool', master: host, default_SR: nfs, other_config: {} });
    this.add('network', { name_label: 'Pool-wide network associated with eth0', bridge: 'xenbr0', VIFs: [], PIFs: [], MTU: '1500', other_config: {} });
    this.add('network', { name_label: 'Lab network', bridge: 'xapi1', VIFs: [], PIFs: [], MTU: '1500', other_config: {} });
    this.add('VM', {
      name_label: 'Other install media',
      is_a_template: true,
      is_default_template: true,
      power_state: 'Halted',
      HVM_boot_policy: 'BIOS order',
      HVM_boot_params: { order: 'dc' },
      platform: { nx: 'true', acpi: '1', apic: 'true', pae: 'true', viridian: 'true' },
      other_config: { disks: '<provision><disk device="0" size="10737418240" sr="" bootable="true" type="system"/></provision>', default_template: 'true' },
      VBDs: [],
      VIFs: [],
      memory_static_max: '2147483648',
      memory_dynamic_max: '2147483648',
      memory_dynamic_min: '2147483648',
      memory_static_min: '268435456',
      VCPUs_max: '1',
      VCPUs_at_startup: '1',
      resident_on: 'OpaqueRef:NULL',
      domain_type: 'hvm',
      tags: [],
    });
    void local;
    void host2;
  }

  /** Makes the Nth next call of METHOD fail with CODE (an injected failure half-way through a flow). */
  failOn(method: string, code: string, params: string[] = [], nth = 1): void {
    this.injected.push({ method, code, params, nth, seen: 0 });
  }

  /** Drops every session, as a restarted master or an expired session would. */
  invalidateSessions(): void {
    this.db.session.clear();
  }

  get url(): string {
    const a = this.server?.address() as AddressInfo;
    return `${this.opts.tls ? 'https' : 'http'}://${a.address}:${a.port}`;
  }

  get port(): number {
    return (this.server?.address() as AddressInfo).port;
  }

  async start(): Promise<this> {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => void this.handle(req, res);
    this.server = this.opts.tls ? https.createServer({ key: this.opts.tls.key, cert: this.opts.tls.cert }, handler) : http.createServer(handler);
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', resolve);
    });
    return this;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => this.server?.close(() => r()) ?? r());
  }

  /** Objects a test created (everything that was not in the seeded pool). */
  find(cls: ClassName, pred: (r: Rec) => boolean): Array<[string, Rec]> {
    return [...this.db[cls].entries()].filter(([, r]) => pred(r));
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks);
    const url = new URL(req.url ?? '/', 'http://sim');
    this.wire.push(`${req.method} ${req.url}`);
    try {
      if (req.method === 'PUT' && (url.pathname === '/import' || url.pathname === '/import_raw_vdi')) {
        return this.handlePut(url, body, res);
      }
      if (req.method !== 'POST') return this.httpStatus(res, 404);
      this.wire.push(body.toString('utf8'));
      if (url.pathname === '/jsonrpc') {
        let msg: { jsonrpc?: string; method: string; params: unknown[]; id: unknown };
        try {
          msg = JSON.parse(body.toString('utf8'));
        } catch {
          return this.httpStatus(res, 500);
        }
        if (msg.id === null || msg.id === undefined) return this.httpStatus(res, 500); // no notifications
        const out = this.invoke(msg.method, (msg.params ?? []) as XapiValue[]);
        const v2 = msg.jsonrpc === '2.0';
        const payload = out.ok
          ? v2
            ? { jsonrpc: '2.0', result: jsonOut(out.value), id: msg.id }
            : { result: jsonOut(out.value), error: null, id: msg.id }
          : v2
            ? { jsonrpc: '2.0', error: { code: 1, message: out.code, data: out.params }, id: msg.id }
            : { result: null, error: [out.code, ...out.params], id: msg.id };
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(JSON.stringify(payload));
      }
      if (url.pathname === '/' || url.pathname === '/RPC2') {
        let call;
        try {
          call = await decodeMethodCall(body.toString('utf8'));
        } catch {
          return this.httpStatus(res, 500);
        }
        const out = this.invoke(call.method, call.params);
        const envelope: XapiValue = out.ok ? { Status: 'Success', Value: out.value } : { Status: 'Failure', ErrorDescription: [out.code, ...out.params] };
        res.writeHead(200, { 'content-type': 'text/xml' });
        return void res.end(encodeMethodResponse(envelope));
      }
      return this.httpStatus(res, 404);
    } catch (err) {
      res.writeHead(500, { 'content-type': 'text/html' });
      res.end(`<html><body>${String(err)}</body></html>`);
    }
  }

  private httpStatus(res: http.ServerResponse, status: number): void {
    res.writeHead(status, { 'content-type': 'text/html' });
    res.end(`<html><body><h1>HTTP ${status}</h1></body></html>`);
  }

  private handlePut(url: URL, body: Buffer, res: http.ServerResponse): void {
    if (this.opts.redirectUploadsOnce && !url.searchParams.has('redirected')) {
      this.opts.redirectUploadsOnce = false;
      url.searchParams.set('redirected', '1');
      res.writeHead(302, { location: `${this.opts.redirectUploadsTo ?? ''}${url.pathname}${url.search}` });
      return void res.end();
    }
    const session = url.searchParams.get('session_id') ?? '';
    const taskRef = url.searchParams.get('task_id');
    if (!this.db.session.has(session)) return this.httpStatus(res, 403);
    const task = taskRef ? this.db.task.get(taskRef) : undefined;
    const finish = (status: 'success' | 'failure', result: string, error: string[] = []) => {
      if (task) Object.assign(task, { status, progress: 1, result, error_info: error });
      this.eventId++;
    };
    const inj = this.takeInjected(url.pathname);
    if (inj) {
      finish('failure', '', [inj.code, ...inj.params]);
      res.writeHead(200, { 'task-id': taskRef ?? '' });
      return void res.end();
    }
    if (url.pathname === '/import_raw_vdi') {
      const vdiArg = url.searchParams.get('vdi') ?? '';
      const vdiRef = this.db.VDI.has(vdiArg) ? vdiArg : [...this.db.VDI.entries()].find(([, r]) => r['uuid'] === vdiArg)?.[0];
      const format = url.searchParams.get('format') ?? 'raw';
      if (!vdiRef) {
        finish('failure', '', ['HANDLE_INVALID', 'VDI', vdiArg]);
      } else if (!['raw', 'vhd', 'tar', 'qcow2'].includes(format)) {
        finish('failure', '', ['INTERNAL_ERROR', `unknown format ${format}`]);
      } else {
        const vdi = this.db.VDI.get(vdiRef)!;
        const virtual = Number(vdi['virtual_size']);
        const size = format === 'vhd' && body.length >= 512 ? Number(body.readBigUInt64BE(body.length - 512 + 48)) : body.length;
        if (size > virtual) finish('failure', '', ['VDI_TOO_SMALL', vdiRef, String(virtual), String(size)]);
        else {
          this.vdiContent.set(vdiRef, body);
          finish('success', '');
        }
      }
      res.writeHead(200, { 'task-id': taskRef ?? '' });
      return void res.end();
    }
    // /import: an XVA (tar with ova.xml first). Parse the header the way xapi does and create the VM.
    void this.importXva(body, url.searchParams.get('sr_id') ?? '').then(
      (vmRef) => finish('success', `<value><array><data><value>${vmRef}</value></data></array></value>`),
      (err: unknown) => finish('failure', '', err instanceof SimFailure ? [err.code, ...err.params] : ['IMPORT_ERROR', String(err)]),
    );
    res.writeHead(200, { 'task-id': taskRef ?? '' });
    res.end();
  }

  private async importXva(tar: Buffer, srRef: string): Promise<string> {
    const name = tar.toString('utf8', 0, 100).replace(/\0.*$/s, '');
    if (name !== 'ova.xml') throw new SimFailure('IMPORT_ERROR', ['first member is not ova.xml']);
    const size = parseInt(tar.toString('latin1', 124, 135), 8);
    const doc = (await decodeValueDocument(tar.toString('utf8', 512, 512 + size))) as Rec;
    const version = doc['version'] as Rec;
    if (Number(version['xapi_major']) > 24) throw new SimFailure('IMPORT_INCOMPATIBLE_VERSION');
    const sr = srRef || String([...this.db.pool.values()][0]!['default_SR']);
    if (!this.db.SR.has(sr)) throw new SimFailure('HANDLE_INVALID', ['SR', sr]);
    const objects = doc['objects'] as Rec[];
    const map = new Map<string, string>();
    const vmObj = objects.find((o) => o['class'] === 'VM')!;
    const vm = this.add('VM', { ...(vmObj['snapshot'] as Rec), VBDs: [], VIFs: [], power_state: 'Halted', resident_on: 'OpaqueRef:NULL' });
    map.set(String(vmObj['id']), vm);
    for (const o of objects.filter((x) => x['class'] === 'VDI')) {
      const s = o['snapshot'] as Rec;
      map.set(String(o['id']), this.add('VDI', { name_label: s['name_label']!, virtual_size: s['virtual_size']!, SR: sr, type: 'user', read_only: false, VBDs: [], managed: true }));
    }
    for (const o of objects.filter((x) => x['class'] === 'VBD')) {
      const s = o['snapshot'] as Rec;
      const vdi = map.get(String(s['VDI'])) ?? 'OpaqueRef:NULL';
      this.createVbd({ ...s, VM: vm, VDI: vdi, empty: vdi === 'OpaqueRef:NULL' });
    }
    const netRef = [...this.db.network.keys()][0]!;
    for (const o of objects.filter((x) => x['class'] === 'VIF')) {
      const s = o['snapshot'] as Rec;
      this.createVif({ device: s['device']!, network: netRef, VM: vm, MAC: '', MTU: '1500', other_config: {} });
    }
    return vm;
  }

  private takeInjected(method: string): Injected | undefined {
    for (const inj of this.injected) {
      if (inj.method !== method) continue;
      inj.seen++;
      if (inj.seen === inj.nth) {
        this.injected.splice(this.injected.indexOf(inj), 1);
        return inj;
      }
    }
    return undefined;
  }

  /** Runs one call; failures come back as values, as XAPI sends them. */
  invoke(method: string, params: XapiValue[]): { ok: true; value: XapiValue } | { ok: false; code: string; params: string[] } {
    this.calls.push(method);
    try {
      const inj = this.takeInjected(method);
      if (inj) throw new SimFailure(inj.code, inj.params);
      return { ok: true, value: this.dispatch(method, params) };
    } catch (err) {
      if (err instanceof SimFailure) return { ok: false, code: err.code, params: err.params };
      return { ok: false, code: 'INTERNAL_ERROR', params: [String(err)] };
    }
  }

  private get(cls: ClassName, ref: XapiValue): Rec {
    const r = this.db[cls].get(String(ref));
    if (!r) throw new SimFailure('HANDLE_INVALID', [cls, String(ref)]);
    return r;
  }

  private dispatch(method: string, params: XapiValue[]): XapiValue {
    if (method === 'session.login_with_password') {
      if (params.length < 2) throw new SimFailure('MESSAGE_PARAMETER_COUNT_MISMATCH', [method, '2', String(params.length)]);
      if (this.opts.slaveOf) throw new SimFailure('HOST_IS_SLAVE', [this.opts.slaveOf]);
      if (params[0] !== this.opts.user || params[1] !== this.opts.password) throw new SimFailure('SESSION_AUTHENTICATION_FAILED', [String(params[0]), 'Authentication failure']);
      return this.add('session', { originator: String(params[3] ?? ''), this_user: String(params[0]) });
    }
    const [session, ...args] = params;
    if (!this.db.session.has(String(session))) throw new SimFailure('SESSION_INVALID', [String(session)]);
    if (method === 'session.logout') {
      this.db.session.delete(String(session));
      return '';
    }
    if (method.startsWith('Async.')) return this.asyncCall(method.slice(6), String(session), args);
    const [cls, op] = splitMethod(method);
    switch (method) {
      case 'pool.get_all':
        return [...this.db.pool.keys()];
      case 'task.create':
        return this.add('task', { name_label: String(args[0] ?? ''), status: 'pending', progress: 0, result: '', error_info: [] });
      case 'task.cancel': {
        const t = this.get('task', args[0]!);
        if (t['status'] === 'pending') t['status'] = 'cancelled';
        return '';
      }
      case 'task.destroy':
        this.get('task', args[0]!);
        this.db.task.delete(String(args[0]));
        return '';
      case 'event.from':
        // Tasks complete synchronously or on a timer; answer at once with a new token.
        return { events: [], valid_ref_counts: {}, token: String(this.eventId) };
      case 'VM.clone':
        return this.vmClone(args[0]!, String(args[1]));
      case 'VM.provision': {
        const vm = this.get('VM', args[0]!);
        vm['is_a_template'] = false;
        return '';
      }
      case 'VM.start':
        return this.vmStart(String(args[0]));
      case 'VM.hard_shutdown':
      case 'VM.clean_shutdown': {
        const vm = this.get('VM', args[0]!);
        if (vm['power_state'] === 'Halted') throw new SimFailure('VM_BAD_POWER_STATE', [String(args[0]), 'running', 'halted']);
        Object.assign(vm, { power_state: 'Halted', resident_on: 'OpaqueRef:NULL' });
        return '';
      }
      case 'VM.destroy': {
        const vm = this.get('VM', args[0]!);
        if (vm['power_state'] !== 'Halted') throw new SimFailure('VM_BAD_POWER_STATE', [String(args[0]), 'halted', String(vm['power_state']).toLowerCase()]);
        for (const vbd of vm['VBDs'] as string[]) this.destroyVbd(vbd);
        for (const vif of vm['VIFs'] as string[]) this.db.VIF.delete(vif);
        this.db.VM.delete(String(args[0]));
        return '';
      }
      case 'VM.pool_migrate': {
        const vm = this.get('VM', args[0]!);
        if (vm['power_state'] !== 'Running') throw new SimFailure('VM_BAD_POWER_STATE', [String(args[0]), 'running', String(vm['power_state']).toLowerCase()]);
        this.get('host', args[1]!);
        vm['resident_on'] = String(args[1]);
        this.attachConsole(String(args[0]));
        return '';
      }
      case 'VM.suspend': {
        // Save-restore for migrate-test: the VM stops and keeps its memory image; no host runs it.
        const vm = this.get('VM', args[0]!);
        if (vm['power_state'] !== 'Running') throw new SimFailure('VM_BAD_POWER_STATE', [String(args[0]), 'running', String(vm['power_state']).toLowerCase()]);
        Object.assign(vm, { power_state: 'Suspended', resident_on: 'OpaqueRef:NULL' });
        return '';
      }
      case 'VM.resume': {
        const vm = this.get('VM', args[0]!);
        if (vm['power_state'] !== 'Suspended') throw new SimFailure('VM_BAD_POWER_STATE', [String(args[0]), 'suspended', String(vm['power_state']).toLowerCase()]);
        Object.assign(vm, { power_state: args[1] === true ? 'Paused' : 'Running', resident_on: [...this.db.host.keys()][0]! });
        this.attachConsole(String(args[0]));
        return '';
      }
      case 'host.migrate_receive': {
        const host = this.get('host', args[0]!);
        this.get('network', args[1]!);
        return { host: String(args[0]), xenops: `http://${String(host['address'])}/services/xenops`, master: 'http://127.0.0.1/', session_id: 'OpaqueRef:dest-session', SM: 'x', 'xenops-sync': 'x' };
      }
      case 'VM.migrate_send': {
        const vm = this.get('VM', args[0]!);
        if (vm['power_state'] !== 'Running') throw new SimFailure('VM_BAD_POWER_STATE', [String(args[0]), 'running', String(vm['power_state']).toLowerCase()]);
        const dest = args[1] as Rec;
        this.get('host', dest['host']!);
        // Storage motion: each mapped VDI moves to its destination SR.
        for (const [vdi, sr] of Object.entries((args[3] ?? {}) as Rec)) {
          this.get('SR', sr);
          this.get('VDI', vdi)['SR'] = sr;
        }
        vm['resident_on'] = String(dest['host']);
        this.attachConsole(String(args[0]));
        return String(args[0]);
      }
      case 'VM.add_to_platform':
      case 'VM.add_to_other_config':
      case 'VM.add_to_HVM_boot_params': {
        const vm = this.get('VM', args[0]!);
        const field = method.slice('VM.add_to_'.length);
        const m = (vm[field] ?? {}) as Rec;
        if (String(args[1]) in m) throw new SimFailure('MAP_DUPLICATE_KEY', ['VM', field, String(args[0]), String(args[1])]);
        m[String(args[1])] = args[2]!;
        vm[field] = m;
        return '';
      }
      case 'VM.remove_from_other_config':
      case 'VM.remove_from_platform': {
        const vm = this.get('VM', args[0]!);
        const field = method.slice('VM.remove_from_'.length);
        delete (vm[field] as Rec)[String(args[1])];
        return '';
      }
      case 'VM.set_memory_limits': {
        const vm = this.get('VM', args[0]!);
        const [smin, smax, dmin, dmax] = args.slice(1).map(Number) as [number, number, number, number];
        if (!(smin <= dmin && dmin <= dmax && dmax <= smax)) throw new SimFailure('MEMORY_CONSTRAINT_VIOLATION', ['static_min <= dynamic_min <= dynamic_max <= static_max']);
        Object.assign(vm, { memory_static_min: String(smin), memory_static_max: String(smax), memory_dynamic_min: String(dmin), memory_dynamic_max: String(dmax) });
        return '';
      }
      case 'VM.set_VCPUs_at_startup': {
        const vm = this.get('VM', args[0]!);
        if (Number(args[1]) > Number(vm['VCPUs_max'])) throw new SimFailure('VALUE_NOT_SUPPORTED', ['VCPU_at_startup', String(args[1]), 'value greater than VCPUs_max']);
        vm['VCPUs_at_startup'] = String(args[1]);
        return '';
      }
      case 'VM.set_VCPUs_max': {
        const vm = this.get('VM', args[0]!);
        if (Number(args[1]) < Number(vm['VCPUs_at_startup'])) throw new SimFailure('VALUE_NOT_SUPPORTED', ['VCPUs_max', String(args[1]), 'value less than VCPUs_at_startup']);
        vm['VCPUs_max'] = String(args[1]);
        return '';
      }
      case 'VDI.create': {
        const r = args[0] as Rec;
        const sr = this.get('SR', r['SR']!);
        if (sr['content_type'] === 'iso') throw new SimFailure('SR_OPERATION_NOT_SUPPORTED', [String(r['SR'])]);
        const ref = this.add('VDI', { ...r, virtual_size: String(r['virtual_size']), VBDs: [], managed: true });
        (sr['VDIs'] as string[]).push(ref);
        return ref;
      }
      case 'VDI.destroy': {
        const vdi = this.get('VDI', args[0]!);
        if ((vdi['VBDs'] as string[]).length) throw new SimFailure('VDI_IN_USE', [String(args[0]), 'destroy']);
        this.db.VDI.delete(String(args[0]));
        this.vdiContent.delete(String(args[0]));
        return '';
      }
      case 'VBD.create':
        return this.createVbd(args[0] as Rec);
      case 'VBD.destroy':
        this.get('VBD', args[0]!);
        this.destroyVbd(String(args[0]));
        return '';
      case 'VBD.insert': {
        const vbd = this.get('VBD', args[0]!);
        if (!vbd['empty']) throw new SimFailure('VBD_NOT_EMPTY', [String(args[0])]);
        this.checkCdVdi(String(args[1]));
        Object.assign(vbd, { VDI: String(args[1]), empty: false });
        return '';
      }
      case 'VIF.create':
        return this.createVif(args[0] as Rec);
      case 'VIF.destroy': {
        const vif = this.get('VIF', args[0]!);
        const vm = this.db.VM.get(String(vif['VM']));
        if (vm) vm['VIFs'] = (vm['VIFs'] as string[]).filter((x) => x !== String(args[0]));
        this.db.VIF.delete(String(args[0]));
        return '';
      }
    }
    // Generic accessors: get_all_records, get_record, get_by_name_label, get_by_uuid, get_<field>, set_<field>.
    const table = this.db[cls as ClassName];
    if (!table) throw new SimFailure('MESSAGE_METHOD_UNKNOWN', [method]);
    if (op === 'get_all_records') return Object.fromEntries(table.entries());
    if (op === 'get_all') return [...table.keys()];
    if (op === 'get_record') return this.get(cls as ClassName, args[0]!);
    if (op === 'get_by_name_label') return [...table.entries()].filter(([, r]) => r['name_label'] === args[0]).map(([k]) => k);
    if (op === 'get_by_uuid') {
      const hit = [...table.entries()].find(([, r]) => r['uuid'] === args[0]);
      if (!hit) throw new SimFailure('UUID_INVALID', [cls, String(args[0])]);
      return hit[0];
    }
    if (op.startsWith('get_')) {
      const r = this.get(cls as ClassName, args[0]!);
      const v = r[op.slice(4)];
      if (v === undefined) throw new SimFailure('MESSAGE_METHOD_UNKNOWN', [method]);
      return v;
    }
    if (op.startsWith('set_')) {
      const r = this.get(cls as ClassName, args[0]!);
      r[op.slice(4)] = args[1]!;
      return '';
    }
    throw new SimFailure('MESSAGE_METHOD_UNKNOWN', [method]);
  }

  private asyncCall(method: string, session: string, args: XapiValue[]): string {
    const task = this.add('task', { name_label: `Async.${method}`, status: 'pending', progress: 0, result: '', error_info: [] });
    const run = () => {
      const out = this.invoke(method, [session, ...args]);
      const t = this.db.task.get(task);
      if (!t) return;
      if (out.ok) Object.assign(t, { status: 'success', progress: 1, result: typeof out.value === 'string' && out.value ? `<value>${out.value}</value>` : '' });
      else Object.assign(t, { status: 'failure', progress: 1, error_info: [out.code, ...out.params] });
      this.eventId++;
    };
    if (this.opts.taskDelayMs) setTimeout(run, this.opts.taskDelayMs);
    else run();
    return task;
  }

  private vmClone(template: XapiValue, name: string): string {
    const t = this.get('VM', template);
    const copy = structuredClone(t);
    return this.add('VM', { ...copy, uuid: randomUUID(), name_label: name, VBDs: [], VIFs: [], power_state: 'Halted', is_default_template: false });
  }

  private checkCdVdi(vdiRef: string): void {
    const vdi = this.get('VDI', vdiRef);
    const sr = this.get('SR', vdi['SR']!);
    if (this.opts.strictCdIso && sr['content_type'] !== 'iso') throw new SimFailure('VDI_IS_NOT_ISO', [vdiRef, String(sr['content_type'])]);
  }

  private createVbd(r: Rec): string {
    const vm = this.get('VM', r['VM']!);
    const empty = Boolean(r['empty']);
    if (r['type'] === 'CD' && r['mode'] !== 'RO') throw new SimFailure('VBD_CDS_MUST_BE_READONLY');
    if (r['type'] !== 'CD' && empty) throw new SimFailure('VBD_NOT_REMOVABLE_MEDIA', ['in constructor']);
    if (r['type'] === 'CD' && !empty) this.checkCdVdi(String(r['VDI']));
    if (r['type'] === 'Disk' && r['mode'] !== 'RW' && vm['HVM_boot_policy']) throw new SimFailure('DISK_VBD_MUST_BE_READWRITE_FOR_HVM', [String(r['VM'])]);
    for (const other of vm['VBDs'] as string[]) {
      if (this.db.VBD.get(other)?.['userdevice'] === r['userdevice']) throw new SimFailure('DEVICE_ALREADY_EXISTS', [String(r['userdevice'])]);
    }
    if (!empty) {
      const vdi = this.get('VDI', r['VDI']!);
      (vdi['VBDs'] as string[]).push('pending');
    }
    const ref = this.add('VBD', { ...r, currently_attached: false });
    (vm['VBDs'] as string[]).push(ref);
    if (!empty) {
      const vdi = this.get('VDI', r['VDI']!);
      const list = vdi['VBDs'] as string[];
      list[list.indexOf('pending')] = ref;
    }
    return ref;
  }

  private destroyVbd(ref: string): void {
    const vbd = this.db.VBD.get(ref);
    if (!vbd) return;
    const vdi = this.db.VDI.get(String(vbd['VDI']));
    if (vdi) vdi['VBDs'] = (vdi['VBDs'] as string[]).filter((x) => x !== ref);
    const vm = this.db.VM.get(String(vbd['VM']));
    if (vm) vm['VBDs'] = (vm['VBDs'] as string[]).filter((x) => x !== ref);
    this.db.VBD.delete(ref);
  }

  private createVif(r: Rec): string {
    const vm = this.get('VM', r['VM']!);
    this.get('network', r['network']!);
    const ref = this.add('VIF', { ...r, MAC: r['MAC'] || '02:00:00:00:00:01', currently_attached: false });
    (vm['VIFs'] as string[]).push(ref);
    return ref;
  }

  private vmStart(ref: string): string {
    const vm = this.get('VM', ref);
    if (vm['is_a_template']) throw new SimFailure('VM_IS_TEMPLATE', [ref, 'start']);
    if (vm['power_state'] !== 'Halted') throw new SimFailure('VM_BAD_POWER_STATE', [ref, 'halted', String(vm['power_state']).toLowerCase()]);
    const hasBoot = (vm['VBDs'] as string[]).some((v) => this.db.VBD.get(v)?.['bootable'] && !this.db.VBD.get(v)?.['empty']);
    if (!hasBoot) throw new SimFailure('BOOTLOADER_FAILED', [ref, 'no bootable disk']);
    const hosts = [...this.db.host.keys()];
    Object.assign(vm, { power_state: 'Running', resident_on: hosts[0]!, domid: '7' });
    this.attachConsole(ref);
    return '';
  }

  /** Connects to the VM's tcp: serial target like QEMU's -serial tcp:HOST:PORT client does. */
  private attachConsole(ref: string): void {
    const vm = this.db.VM.get(ref);
    const serial = String((vm?.['platform'] as Rec | undefined)?.['hvm_serial'] ?? '');
    const m = /^tcp:([^:]+|\[[^\]]+\]):(\d+)$/.exec(serial);
    if (!vm || !m || !this.opts.guestConsole) return;
    const text = this.opts.guestConsole({ ref, record: vm, sim: this });
    const sock = net.connect(Number(m[2]), m[1]!.replace(/^\[|\]$/g, ''), () => {
      this.consoleConnections++;
      sock.end(text);
    });
    sock.on('error', () => undefined);
  }
}

function splitMethod(method: string): [string, string] {
  const i = method.indexOf('.');
  return [method.slice(0, i), method.slice(i + 1)];
}

/** JSON-RPC carries XAPI ints as numbers; the simulator stores them as XML-RPC strings. */
function jsonOut(v: XapiValue): unknown {
  return v;
}
