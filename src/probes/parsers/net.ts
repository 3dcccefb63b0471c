/**
 * Parsers for the network sections of collector 1.2 (docs/netfront-design.md §6): `ifconfig -a`,
 * `kldstat -v`, the loader tunables (`kenv-net`), the round trip (`net-rt`), and netfront's kernel
 * messages. Unknown lines are ignored; nothing here decides a verdict.
 */
import { z } from 'zod';

export const IfaceSchema = z.object({
  name: z.string(),
  flags: z.array(z.string()),
  mtu: z.number().int().nullable(),
  /** `options=503<RXCSUM,TXCSUM,TSO4,LRO>`: the enabled capabilities (hex and names) */
  options: z.object({ hex: z.string(), names: z.array(z.string()) }).nullable(),
  ether: z.string().nullable(),
  inet: z.array(z.string()),
  status: z.string().nullable(),
  /** bridge members (`member: xn0 flags=...`) */
  members: z.array(z.string()),
});
export type Iface = z.infer<typeof IfaceSchema>;

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** `ifconfig -a` (FreeBSD 10-15): a header line per interface, then tab-indented detail lines. */
export function parseIfconfig(text: string): Iface[] {
  const out: Iface[] = [];
  let cur: Iface | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const h = /^([a-z][a-z0-9_.]*\d*): flags=[0-9a-f]+<([^>]*)>(?: metric \d+)?(?: mtu (\d+))?/.exec(line);
    if (h) {
      cur = { name: h[1]!, flags: h[2] ? h[2].split(',') : [], mtu: h[3] ? Number(h[3]) : null, options: null, ether: null, inet: [], status: null, members: [] };
      out.push(cur);
      continue;
    }
    if (!cur || !/^\s/.test(line)) continue;
    const t = line.trim();
    let m = /^options=([0-9a-f]+)<([^>]*)>/.exec(t);
    if (m) cur.options = { hex: m[1]!, names: m[2] ? m[2].split(',') : [] };
    else if ((m = /^ether (\S+)/.exec(t)) && MAC.test(m[1]!.toLowerCase())) cur.ether = m[1]!.toLowerCase();
    else if ((m = /^inet (\d+\.\d+\.\d+\.\d+)\b/.exec(t))) cur.inet.push(m[1]!);
    else if ((m = /^status: (.+)$/.exec(t))) cur.status = m[1]!;
    else if ((m = /^member: (\S+)/.exec(t))) cur.members.push(m[1]!);
  }
  return z.array(IfaceSchema).parse(out);
}

/**
 * `kldstat -v`: file lines (`Id Refs Address Size Name`) and the modules each contains, compiled-in ones
 * included (kernel's list). Returns every module and file name, `.ko` removed.
 */
export function parseKldstat(text: string): string[] | undefined {
  const names = new Set<string>();
  let sawHeader = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (/^\s*Id\s+Refs\s+Address/.test(line)) sawHeader = true;
    const file = /^\s*\d+\s+\d+\s+0x[0-9a-f]+\s+[0-9a-f]+\s+(\S+)(?:\s+\(.*\))?$/.exec(line);
    if (file) names.add(file[1]!.replace(/\.ko$/, ''));
    const mod = /^\s+\d+\s+([A-Za-z0-9_./-]+)$/.exec(line);
    if (mod) names.add(mod[1]!.replace(/^.*\//, ''));
  }
  return sawHeader ? [...names] : undefined;
}

/** The collector's kenv-net section: `name="value"` or kenv's own `kenv: unable to get name`. */
export function parseKenv(text: string): Record<string, string | null> {
  const out: Record<string, string | null> = Object.create(null) as Record<string, string | null>;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    let m = /^([a-z][a-z0-9_.]*)="(.*)"$/.exec(line);
    if (m) out[m[1]!] = m[2]!;
    else if ((m = /^kenv: unable to get ([a-z][a-z0-9_.]*)/.exec(line))) out[m[1]!] ??= null;
  }
  return { ...out };
}

export const NetRtSchema = z.object({
  /** `not-arranged <reason>` lines: why the guest did not try */
  notArranged: z.array(z.string()),
  config: z.object({ host: z.string(), up: z.number().int(), down: z.number().int(), bytes: z.number().int() }).nullable(),
  /** `interface: xn0` from `route -n get <host>` */
  routeInterface: z.string().nullable(),
  upStatus: z.number().int().nullable(),
  downStatus: z.number().int().nullable(),
  downBytes: z.number().int().nullable(),
  downSha256: z.string().nullable(),
  /** nc's own messages (connection refused, timeouts), quoted as evidence */
  messages: z.array(z.string()),
});
export type NetRt = z.infer<typeof NetRtSchema>;

/** The collector's net-rt section (collector 1.2, docs/probe-protocol.md). */
export function parseNetRt(text: string): NetRt {
  const r: NetRt = { notArranged: [], config: null, routeInterface: null, upStatus: null, downStatus: null, downBytes: null, downSha256: null, messages: [] };
  const num = (s: string) => (/^\d{1,12}$/.test(s) ? Number(s) : null);
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    let m;
    if ((m = /^not-arranged (.+)$/.exec(line))) r.notArranged.push(m[1]!);
    else if ((m = /^config host=(\d+\.\d+\.\d+\.\d+) up=(\d{1,5}) down=(\d{1,5}) bytes=(\d{1,12})$/.exec(line))) r.config = { host: m[1]!, up: Number(m[2]), down: Number(m[3]), bytes: Number(m[4]) };
    else if ((m = /^\s*interface: (\S+)$/.exec(line))) r.routeInterface = m[1]!;
    else if ((m = /^up-status (\d+)$/.exec(line))) r.upStatus = num(m[1]!);
    else if ((m = /^down-status (\d+)$/.exec(line))) r.downStatus = num(m[1]!);
    else if ((m = /^down-bytes (\d+)$/.exec(line))) r.downBytes = num(m[1]!);
    else if ((m = /^down-sha256 ([0-9a-f]{64})$/.exec(line))) r.downSha256 = m[1]!;
    else if (/^(nc|up|down): /.test(line) && r.messages.length < 8) r.messages.push(line);
  }
  return NetRtSchema.parse(r);
}

/** What netfront printed, per xn unit, from kernel messages (FreeBSD 10.4-15, docs/netfront-design.md §1.1). */
export interface XnMessages {
  unit: number;
  node: string | null;
  mac: string | null;
  /** the last `backend features:` line's pieces (`feature-sg`...), null when none was printed */
  features: string[] | null;
  /** how many `backend features:` lines (one per connect: boot, each resume, each reset) */
  connects: number;
  resets: number;
}

export const NETFRONT_ERROR = [
  /^xn\d+: Error -?\d+ /,
  /^xenbus: failed to write error node for device\/vif\//,
  /^xn_txeof: WARNING: response is/,
  /^xn_get_responses: (Bad rx response id|cons \d+ frags)/,
  /^xn\d+: (LRO initialization failed|failed to |xen_intr_alloc_and_bind_local_port failed|Unable to release)/,
];

export function parseNetfrontMessages(lines: readonly string[]): { xn: Map<number, XnMessages>; errors: string[] } {
  const xn = new Map<number, XnMessages>();
  const errors: string[] = [];
  const unit = (n: number) => {
    let x = xn.get(n);
    if (!x) xn.set(n, (x = { unit: n, node: null, mac: null, features: null, connects: 0, resets: 0 }));
    return x;
  };
  for (const line of lines) {
    let m = /^xn(\d+): <Virtual Network Interface> at (device\/vif\/\d+) on xenbusb_front\d+$/.exec(line);
    if (m) {
      unit(Number(m[1])).node = m[2]!;
      continue;
    }
    m = /^xn(\d+): Ethernet address: ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})$/.exec(line);
    if (m) {
      unit(Number(m[1])).mac = m[2]!.toLowerCase();
      continue;
    }
    m = /^xn(\d+): backend features:((?: feature-[a-z0-9-]+)*)\s*$/.exec(line);
    if (m) {
      const x = unit(Number(m[1]));
      x.features = m[2]!.trim() ? m[2]!.trim().split(/\s+/) : [];
      x.connects++;
      continue;
    }
    m = /^xn(\d+): performing interface reset due to feature change$/.exec(line);
    if (m) {
      unit(Number(m[1])).resets++;
      continue;
    }
    if (NETFRONT_ERROR.some((re) => re.test(line)) && errors.length < 20) errors.push(line);
  }
  return { xn, errors };
}

/** An emulated NIC QEMU gives an HVM guest (rtl8139 → re/rl, e1000 → em): name, description, MAC. */
export interface EmulatedNic {
  name: string;
  desc: string;
  mac: string | null;
}

export function parseEmulatedNics(lines: readonly string[]): EmulatedNic[] {
  const nics = new Map<string, EmulatedNic>();
  for (const line of lines) {
    const m = /^((?:re|rl|em|le|ed)\d+): <([^>]*)> .*\bon pci\d+$/.exec(line);
    if (m) {
      if (!nics.has(m[1]!)) nics.set(m[1]!, { name: m[1]!, desc: m[2]!, mac: null });
      continue;
    }
    const e = /^((?:re|rl|em|le|ed)\d+): Ethernet address: ([0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5})$/.exec(line);
    if (e && nics.has(e[1]!)) nics.get(e[1]!)!.mac = e[2]!.toLowerCase();
  }
  return [...nics.values()];
}

/** netmap's generic (emulated) adapter messages: `Emulated adapter for xn0 created` (opnsense/src#211). */
export function parseNetmapEvents(lines: readonly string[]): { iface: string; event: string; line: string }[] {
  const out: { iface: string; event: string; line: string }[] = [];
  for (const line of lines) {
    const m = /\bEmulated (?:netmap )?adapter for (\S+) (created|destroyed|activated|deactivated)\b/.exec(line);
    if (!m) continue;
    out.push({ iface: m[1]!, event: m[2]!, line: line.trim() });
    // the newest events decide; a flood of them is not kept whole
    if (out.length > 200) out.shift();
  }
  return out;
}
