/**
 * netfront (issue 18): every vif the toolstack gave the guest is an `xnN` attached through xenbusb_front,
 * connected to its backend, and carries traffic byte for byte both ways. Offloads on a routing or
 * filtering guest and netmap's emulated adapter on xn are warnings, never failures.
 * Messages, sysctls and flags: docs/netfront-design.md (FreeBSD sys/dev/xen/netfront/netfront.c per release).
 */
import type { DownloadAttempt, HostRoundTrip, RoundTripNotArranged, UploadAttempt } from '../core/net/roundtrip.js';
import { completeBoot, guestFacts, safe, xenGuestEvidence, type GuestFacts } from './facts.js';
import {
  parseEmulatedNics,
  parseIfconfig,
  parseKenv,
  parseKldstat,
  parseNetfrontMessages,
  parseNetmapEvents,
  parseNetRt,
  type EmulatedNic,
  type Iface,
  type NetRt,
  type XnMessages,
} from './parsers/net.js';
import { parseSysctl, type Sysctl } from './parsers/sysctl.js';
import { defineProbe, fail, inconclusive, pass, skip, type Bundle, type NetHostKnowledge, type ProbeContext, type ProbeOutcome } from './types.js';

export const NETFRONT_SECTIONS = ['sysctl', 'dmesg-boot', 'dmesg', 'ifconfig', 'net-sysctl', 'kenv-net', 'kldstat', 'net-rt'] as const;

/** What netfront printed about the unit (mac: from the attach messages), and what else the guest showed. */
interface Xn extends XnMessages {
  state: string | null;
  peerPath: string | null;
  iface: Iface | undefined;
}

export interface NetFacts {
  g: GuestFacts;
  xns: Xn[];
  errors: string[];
  emulated: EmulatedNic[];
  netmap: { iface: string; event: string; line: string }[];
  ifaces: Iface[] | undefined;
  netSysctl: Sysctl | undefined;
  modules: string[] | undefined;
  kenv: Record<string, string | null> | undefined;
  rt: NetRt | undefined;
  present: Set<string>;
  status: Map<string, number>;
}

export function netFacts(bundle: Bundle): NetFacts {
  const g = guestFacts(bundle);
  const s = (n: string) => bundle.sections.get(n);
  // dmesg -a holds the newest connect (after a resume); dmesg.boot the boot's, when -a has wrapped
  const boot = parseNetfrontMessages(g.dmesgBoot ?? []);
  const live = parseNetfrontMessages(g.dmesg ?? []);
  const ifaces = safe(s('ifconfig'), (t) => {
    const l = parseIfconfig(t);
    return l.length ? l : undefined;
  });
  const units = new Set<number>([...boot.xn.keys(), ...live.xn.keys()]);
  const sys = g.sysctl?.values ?? {};
  for (const k of Object.keys(sys)) {
    const m = /^dev\.xn\.(\d+)\./.exec(k);
    if (m) units.add(Number(m[1]));
  }
  for (const i of ifaces ?? []) {
    const m = /^xn(\d+)$/.exec(i.name);
    if (m) units.add(Number(m[1]));
  }
  const xns = [...units]
    .sort((a, b) => a - b)
    .map((u): Xn => {
      const b = boot.xn.get(u);
      const l = live.xn.get(u);
      const v = (k: string) => sys[`dev.xn.${u}.${k}`]?.trim() || null;
      return {
        unit: u,
        node: l?.node ?? b?.node ?? v('xenstore_path'),
        mac: l?.mac ?? b?.mac ?? null,
        features: l?.features ?? b?.features ?? null,
        connects: Math.max(l?.connects ?? 0, b?.connects ?? 0),
        resets: Math.max(l?.resets ?? 0, b?.resets ?? 0),
        state: v('xenbus_connection_state'),
        peerPath: v('xenstore_peer_path'),
        iface: ifaces?.find((i) => i.name === `xn${u}`),
      };
    });
  const msgs = [...(g.dmesgBoot ?? []), ...(g.dmesg ?? [])];
  return {
    g,
    xns,
    errors: [...new Set([...boot.errors, ...live.errors])],
    emulated: parseEmulatedNics(msgs),
    netmap: parseNetmapEvents(g.dmesg ?? g.dmesgBoot ?? []),
    ifaces,
    netSysctl: safe(s('net-sysctl'), parseSysctl),
    modules: safe(s('kldstat'), parseKldstat),
    kenv: safe(s('kenv-net'), parseKenv),
    rt: safe(s('net-rt'), parseNetRt),
    present: new Set(bundle.sections.keys()),
    status: new Map(bundle.index.map((e) => [e.name, e.status])),
  };
}

const name = (x: Xn) => `xn${x.unit}`;
const macOf = (x: Xn) => x.iface?.ether ?? x.mac;
const XEN_OUI = /^00:16:3e:/;

const OFFLOAD_FIX = (n: string) =>
  `Fix: ifconfig ${n} -txcsum -tso -lro (persist as ifconfig_${n}="... -txcsum -tso -lro" in rc.conf; the loader tunable hw.xn.enable_lro=0 covers LRO only), or let the backend fill checksums (XAPI: xe vif-param-set uuid=<vif> other-config:ethtool-tx=off)`;

const HINT_EMULATED = 'the guest uses an emulated NIC instead of netfront: remove hw.xen.disable_pv_nics from /boot/loader.conf (kenv), boot a kernel with the xn driver (GENERIC has it), and on xl give the vif type=vif if the emulated twin is not wanted';
const HINT_NOT_CONNECTED = 'netfront did not connect to its backend: check the backend (xl: vif script and bridge in dom0 logs; XAPI: the VIF is plugged), and `dmesg | grep ^xn` and `sysctl dev.xn` in the guest';
const HINT_TRAFFIC = 'the PV network path lost or corrupted bytes: turn checksum offload off in the guest (ifconfig xnN -txcsum -tso -lro) and check the backend (dom0 netback, the bridge, vif offload settings)';

/** Why the round trip gives no answer, or its result. */
function roundTrip(f: NetFacts, host: NetHostKnowledge | undefined): { verdict: 'ok' | 'fail' | 'unknown'; evidence: string[] } {
  const rt = f.rt;
  if (!rt) {
    return { verdict: 'unknown', evidence: [f.present.has('net-rt') ? 'the net-rt section is unreadable: the traffic round trip is not shown' : 'no net-rt section (a collector before 1.2, or evidence collected by hand): the traffic round trip was not run'] };
  }
  const rec = host?.roundTrip;
  // the host's reason says why the guest found no files (no bridge address, a remote host...)
  if (rt.notArranged.length) return { verdict: 'unknown', evidence: [`the round trip was not run: ${rt.notArranged.join('; ')}${rec && 'arranged' in rec ? `; the host: ${(rec as RoundTripNotArranged).reason}` : ''}`] };
  if (!rec) return { verdict: 'unknown', evidence: ['the host\'s record of the round trip is missing (what its listener received is needed to check the bytes): verify through the run that started the listener'] };
  if ('arranged' in rec) return { verdict: 'unknown', evidence: [`the host could not arrange the round trip: ${(rec as RoundTripNotArranged).reason}`] };
  const r = rec as HostRoundTrip;
  if (rt.config && (rt.config.host !== r.address || rt.config.up !== r.upPort || rt.config.down !== r.downPort)) {
    return { verdict: 'unknown', evidence: [`the guest used ${rt.config.host} ports ${rt.config.up}/${rt.config.down}, not this run's listener ${r.address} ports ${r.upPort}/${r.downPort} (another run's files)`] };
  }
  const evidence: string[] = [];
  const bad: string[] = [];
  const unknown: string[] = [];
  const up: UploadAttempt | undefined = r.uploads.at(-1);
  if (!up) {
    unknown.push(`no upload reached the host's listener ${r.address}:${r.upPort}${rt.upStatus !== null ? ` (the guest's nc exited ${rt.upStatus})` : ''}${rt.messages.length ? `: ${rt.messages.join('; ')}` : ''}`);
  } else if (up.outcome === 'complete') {
    evidence.push(`upload: ${up.expectedBytes} bytes from ${up.peer} identical to the payload (host check); first byte ${up.firstByteAt !== null ? `${up.firstByteAt - up.connectedAt} ms after the connection, ${up.firstByteAt - r.listeningSince} ms after the listener started` : 'never'}`);
  } else if (up.outcome === 'corrupt' || up.outcome === 'short' || up.outcome === 'extra' || (up.outcome === 'stalled' && up.receivedBytes > 0)) {
    bad.push(`upload from ${up.peer}: ${up.outcome}: ${up.detail}${up.firstDifference !== null ? ` (first differing byte at offset ${up.firstDifference})` : ''}`);
  } else {
    unknown.push(`upload from ${up.peer}: ${up.outcome}: ${up.detail}`);
  }
  const down: DownloadAttempt | undefined = r.downloads.at(-1);
  if (rt.downSha256 !== null && rt.downBytes !== null && rt.downBytes > 0) {
    if (rt.downSha256 === r.downSha256 && rt.downBytes === r.payloadBytes) evidence.push(`download: the guest received ${rt.downBytes} bytes, sha256 ${rt.downSha256.slice(0, 16)}... = the host's payload`);
    else bad.push(`download: the guest received ${rt.downBytes} bytes with sha256 ${rt.downSha256.slice(0, 16)}..., the host sent ${down?.sentBytes ?? r.payloadBytes} bytes with sha256 ${r.downSha256.slice(0, 16)}...${rt.downBytes < r.payloadBytes ? ' (bytes lost)' : ' (bytes differ)'}`);
  } else {
    unknown.push(`the guest shows no download result (down-status ${rt.downStatus ?? 'missing'}, down-bytes ${rt.downBytes ?? 'missing'})${down ? `; the host: ${down.outcome}, ${down.detail}` : '; no download connection reached the host'}`);
  }
  if (bad.length) return { verdict: 'fail', evidence: [...bad, ...evidence] };
  if (unknown.length) return { verdict: 'unknown', evidence: [...unknown, ...evidence] };
  // the bytes are right; which interface carried them decides whether this shows netfront
  const peerIp = up?.peer.replace(/:\d+$/, '').replace(/^::ffff:/, '');
  const via = rt.routeInterface ?? f.ifaces?.find((i) => peerIp !== undefined && i.inet.includes(peerIp))?.name ?? null;
  if (via === null) return { verdict: 'unknown', evidence: [`the round trip's bytes are right, but which interface carried them is not shown (no "interface:" line from route -n get ${r.address}, and the peer ${peerIp ?? '?'} is no interface's inet)`, ...evidence] };
  if (!/^xn\d+$/.test(via)) return { verdict: 'unknown', evidence: [`the round trip went through ${via}, not through an xn interface: it does not show the PV network path`, ...evidence] };
  return { verdict: 'ok', evidence: [`round trip through ${via} to ${r.address}${r.forwardedBy ? ` (forwarded to fbxen by ${r.forwardedBy})` : ''}: byte for byte both ways`, ...evidence] };
}

function warnings(f: NetFacts): string[] {
  const w: string[] = [];
  const v = (k: string) => f.netSysctl?.values[k]?.trim();
  const routing = [v('net.inet.ip.forwarding') === '1' && 'net.inet.ip.forwarding: 1', v('net.inet6.ip6.forwarding') === '1' && 'net.inet6.ip6.forwarding: 1'].filter(Boolean) as string[];
  const filters = (f.modules ?? []).filter((m) => /^(pf|ipfw|ipfilter|ipl)$/.test(m));
  for (const x of f.xns) {
    const opts = x.iface?.options;
    const on = (opts?.names ?? []).filter((o) => /^(TXCSUM|TXCSUM_IPV6|TSO4|TSO6)$/.test(o));
    const bridges = (f.ifaces ?? []).filter((i) => i.members.includes(name(x))).map((i) => `member of ${i.name}`);
    const why = [...routing, ...filters.map((m) => `${m} loaded (kldstat)`), ...bridges];
    if (on.length && why.length) {
      w.push(`warning: ${name(x)} offloads ${on.join(', ')} (options=${opts!.hex}<${opts!.names.join(',')}>) on a guest that routes, filters or bridges (${why.join(', ')}): netfront leaves TCP/UDP checksums blank for the backend, so forwarded packets can leave without a valid checksum (xnb(4) CAVEATS; opnsense/core#735; pf fix r289316). ${OFFLOAD_FIX(name(x))}`);
    }
    if (x.features && !x.features.includes('feature-sg')) w.push(`warning: ${name(x)}: the backend offers no feature-sg (backend features:${x.features.map((p) => ` ${p}`).join('')}): every packet is sent as one fragment`);
    if (x.resets) w.push(`warning: ${name(x)}: "performing interface reset due to feature change" ${x.resets} time(s) (an rxcsum/lro change reconnects to the backend)`);
  }
  const byIface = new Map<string, { events: string[]; line: string }>();
  for (const e of f.netmap) {
    if (!/^xn\d+$/.test(e.iface)) continue;
    const cur = byIface.get(e.iface) ?? { events: [], line: e.line };
    cur.events.push(e.event);
    cur.line = e.line;
    byIface.set(e.iface, cur);
  }
  for (const x of f.xns) {
    const ev = byIface.get(name(x));
    const netmapOpt = x.iface?.options?.names.includes('NETMAP');
    if (!ev && !netmapOpt) continue;
    const created = ev?.events.filter((e) => e === 'created').length ?? 0;
    const last = ev?.events.at(-1);
    const active = netmapOpt || (last !== undefined && last !== 'destroyed' && last !== 'deactivated');
    if (!active && created < 3) continue;
    w.push(
      `warning: netmap uses its emulated (generic) adapter on ${name(x)} (netfront has no native netmap support)${ev ? `: created ${created} time(s), last "${ev.line}"` : ': NETMAP in options'}. An OPNsense guest (FreeBSD 14.1-RELEASE-p2, XCP-ng 8.2.1) panicked (Fatal trap 12) after repeated create/destroy of this adapter on xn0: https://github.com/opnsense/src/issues/211; the cause is not published. IPS/Suricata/Zenarmor in netmap mode on xn runs this adapter; their guides ask for offloads off with netmap (ifconfig ${name(x)} -txcsum -tso -lro)`,
    );
  }
  for (const e of f.emulated) {
    const twin = f.xns.find((x) => e.mac !== null && macOf(x) === e.mac);
    if (twin) w.push(`warning: ${e.name} <${e.desc}> and ${name(twin)} carry the same MAC ${e.mac}: the emulated NIC was not unplugged (use type=vif on xl, or ignore ${e.name})`);
  }
  return w;
}

function describe(x: Xn): string {
  const parts = [
    `${name(x)}${x.node ? ` at ${x.node}` : ''} on xenbusb_front`,
    macOf(x) ? `ether ${macOf(x)}` : 'MAC not shown',
    x.features ? `backend features:${x.features.length ? x.features.map((p) => ` ${p}`).join('') : ' (none)'}` : 'no "backend features:" line',
    x.state ? `dev.${name(x).replace(/(\d+)$/, '.$1')}.xenbus_connection_state: ${x.state}` : 'connection state not shown',
  ];
  if (x.peerPath) parts.push(`backend ${x.peerPath}`);
  if (x.iface?.options) parts.push(`options=${x.iface.options.hex}<${x.iface.options.names.join(',')}>`);
  if (x.iface?.inet.length) parts.push(`inet ${x.iface.inet.join(', ')}`);
  return parts.join('; ');
}

export function netfrontVerdict(f: NetFacts, ctx: ProbeContext): ProbeOutcome {
  const x = xenGuestEvidence(f.g);
  if (x && !x.xen) return skip(x.reason);
  const host = ctx.net;
  const fails: string[] = [];
  const missing: string[] = [];
  const evidence: string[] = [];
  let hint: string | undefined;
  const disabled = f.kenv?.['hw.xen.disable_pv_nics'];
  const disabledNote = disabled !== undefined && disabled !== null && disabled !== '0' ? ` (kenv hw.xen.disable_pv_nics="${disabled}")` : '';
  const dmesgComplete = completeBoot(f.g) !== undefined;
  const xnRefused = f.g.sysctl?.unknown.includes('dev.xn') ?? false;

  for (const e of f.errors) fails.push(`netfront error: ${e}`);
  if (f.errors.length) hint = HINT_NOT_CONNECTED;

  // every vif the host gave: an xn for it (by devid, else by MAC), with that MAC
  const vifs = host?.vifs;
  const matched = new Set<Xn>();
  for (const [i, vif] of (vifs ?? []).entries()) {
    const label = `vif ${i}${vif.devid !== undefined ? ` (devid ${vif.devid})` : ''}${vif.mac ? ` ${vif.mac}` : ''}${vif.bridge ? ` on ${vif.bridge}` : ''}`;
    const mac = vif.mac?.toLowerCase();
    const xn =
      (vif.devid !== undefined ? f.xns.find((n) => n.node === `device/vif/${vif.devid}`) : undefined) ??
      (mac ? f.xns.find((n) => macOf(n) === mac) : f.xns.find((n) => !matched.has(n)));
    if (xn) {
      matched.add(xn);
      if (mac && macOf(xn) && macOf(xn) !== mac) {
        fails.push(`${name(xn)} has ether ${macOf(xn)}, but the host gave ${label} (${host!.source})`);
        hint ??= 'the guest\'s MAC differs from the vif\'s: after a migration netfront keeps the MAC it attached with (ether_ifattach); check the vif\'s mac in xenstore on both hosts';
      }
      continue;
    }
    const emu = f.emulated.find((e) => mac && e.mac === mac) ?? (mac ? undefined : f.emulated[0]);
    if (emu) {
      fails.push(`${label} (${host!.source}) is the emulated ${emu.name} <${emu.desc}>${emu.mac ? ` ${emu.mac}` : ''}, not an xn${disabledNote}`);
      hint = HINT_EMULATED;
    } else if (dmesgComplete || xnRefused) {
      fails.push(`${label} (${host!.source}) has no xn interface${xnRefused ? " (sysctl: unknown oid 'dev.xn')" : ' in a complete boot log'}${disabledNote}`);
      hint ??= disabledNote ? HINT_EMULATED : HINT_NOT_CONNECTED;
    } else {
      missing.push(`${label} (${host!.source}): no xn for it in the evidence, but the boot log is not complete and dev.xn was not read`);
    }
  }

  if (f.xns.length === 0 && fails.length === 0) {
    if (vifs && vifs.length === 0) return skip(`the run gave this guest no vif (${host!.source}) and no xn attached`);
    const emu = f.emulated.map((e) => `${e.name} <${e.desc}>${e.mac ? ` ${e.mac}${XEN_OUI.test(e.mac) ? ' (Xen OUI)' : ''}` : ''}`);
    return inconclusive(
      `no xn interface${xnRefused ? " (sysctl: unknown oid 'dev.xn')" : ''}${emu.length ? `; emulated NIC ${emu.join(', ')} instead` : ''}${disabledNote}: whether the toolstack gave this guest a vif is not known (no run record of its vifs), so this is no failure`,
      ...(disabledNote ? ['hw.xen.disable_pv_nics is set: netfront refuses to attach (netfront_probe returns ENXIO) and the emulated NIC stays'] : []),
    );
  }

  for (const n of f.xns) {
    evidence.push(describe(n));
    if (n.state !== null && n.state !== 'Connected') {
      fails.push(`dev.xn.${n.unit}.xenbus_connection_state: ${n.state} (not Connected)${n.features ? '' : '; no "backend features:" line'}`);
      hint ??= HINT_NOT_CONNECTED;
    } else if (n.state === null && n.features === null) {
      missing.push(`${name(n)}: neither dev.xn.${n.unit}.xenbus_connection_state nor a "backend features:" line: whether it connected is not shown`);
    }
  }

  const rt = roundTrip(f, host);
  if (rt.verdict === 'fail') {
    fails.push(...rt.evidence);
    hint ??= HINT_TRAFFIC;
  }
  const warn = warnings(f);
  if (fails.length) return fail([...fails, ...warn, ...evidence], hint);
  if (missing.length || rt.verdict === 'unknown') return inconclusive(...missing, ...(rt.verdict === 'unknown' ? rt.evidence : []), ...warn, ...evidence);
  return pass(...warn, ...evidence, ...rt.evidence);
}

export const netfront = defineProbe<NetFacts>({
  id: 'netfront',
  claim: 'every vif is an xn attached through xenbusb_front and connected to its backend, and carries a traffic round trip byte for byte both ways',
  sections: NETFRONT_SECTIONS,
  parse: (bundle) => netFacts(bundle),
  verdict: netfrontVerdict,
  requiresXen: true,
  hint: 'check `dmesg | grep ^xn` and `sysctl dev.xn` in the guest, and the vif in the toolstack (xl: vif=[...]; XAPI: a VIF on the network)',
});
