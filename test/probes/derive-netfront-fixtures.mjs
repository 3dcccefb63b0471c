#!/usr/bin/env node
/**
 * Writes the DERIVED netfront fixtures under fixtures/probes/ (run: node test/probes/derive-netfront-fixtures.mjs).
 *
 * No published dmesg of a FreeBSD guest shows xn0's attach lines (docs/netfront-design.md §0), so these
 * cases are composed from netfront.c's message texts and sysctls (design §1), ifconfig's format (the
 * options line of the 2021-12 freebsd-net capture), and the netmap lines of opnsense/src#211. Each starts
 * from a generated healthy case of the same release (its other probes keep their verdicts) and adds the
 * collector 1.2 network sections; `host-net.json` is what fbxen's run record would tell the probe (the
 * vifs it gave, its round trip listener's record), passed as the probe context by test/probes.
 */
import { cpSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '../..');
const out = join(root, 'fixtures/probes');
const MAC = '00:16:3e:5a:01:02';
const HOST = '192.168.122.1';
const GUEST = '192.168.122.50';
const BYTES = 1048576;
const sha = (s) => createHash('sha256').update(s).digest('hex');
const UP_SHA = sha('fixture up payload');
const DOWN_SHA = sha('fixture down payload');

const xnDmesg = (o) => [
  'xn0: <Virtual Network Interface> at device/vif/0 on xenbusb_front0',
  `xn0: Ethernet address: ${o.mac ?? MAC}`,
  ...(o.features === null ? [] : [`xn0: backend features:${o.features ?? ' feature-sg feature-gso-tcp4'}`]),
];
const reDmesg = ['re0: <RealTek 8139C+ 10/100BaseTX> port 0xc000-0xc0ff mem 0xf2001000-0xf20010ff irq 32 at device 4.0 on pci0', 'miibus0: <MII bus> on re0', 'rlphy0: <RealTek internal media interface> PHY 0 on miibus0', `re0: Ethernet address: ${MAC}`];

const xnSysctl = (o) =>
  [
    ...(o.major >= 12 ? ['dev.xn.0.num_queues: 4'] : []),
    'dev.xn.0.enable_lro: 1',
    'dev.xn.0.xenstore_peer_path: /local/domain/0/backend/vif/5/0',
    'dev.xn.0.xenbus_peer_domid: 0',
    `dev.xn.0.xenbus_connection_state: ${o.state ?? 'Connected'}`,
    'dev.xn.0.xenbus_dev_type: vif',
    'dev.xn.0.xenstore_path: device/vif/0',
    'dev.xn.0.%parent: xenbusb_front0',
    'dev.xn.0.%driver: xn',
    'dev.xn.0.%desc: Virtual Network Interface',
    'dev.xn.%parent: ',
  ].join('\n');

const ifconfig = (o) =>
  [
    `${o.nic}: flags=8843<UP,BROADCAST,RUNNING,SIMPLEX,MULTICAST> metric 0 mtu 1500`,
    `\toptions=${o.options ?? (o.nic === 'xn0' ? '503<RXCSUM,TXCSUM,TSO4,LRO>' : '82099<RXCSUM,VLAN_MTU,VLAN_HWTAGGING,VLAN_HWCSUM,WOL_MAGIC,LINKSTATE>')}`,
    `\tether ${MAC}`,
    `\tinet ${GUEST} netmask 0xffffff00 broadcast 192.168.122.255`,
    `\tmedia: Ethernet ${o.nic === 'xn0' ? 'manual' : 'autoselect (100baseTX <full-duplex>)'}`,
    '\tstatus: active',
    '\tnd6 options=29<PERFORMNUD,IFDISABLED,AUTO_LINKLOCAL>',
    'lo0: flags=8049<UP,LOOPBACK,RUNNING,MULTICAST> metric 0 mtu 16384',
    '\toptions=680003<RXCSUM,TXCSUM,LINKSTATE,RXCSUM_IPV6,TXCSUM_IPV6>',
    '\tinet6 ::1 prefixlen 128',
    '\tinet 127.0.0.1 netmask 0xff000000',
    '\tgroups: lo',
    '\tnd6 options=21<PERFORMNUD,AUTO_LINKLOCAL>',
    '',
  ].join('\n');

const kldstat = (o) =>
  [
    'Id Refs Address                Size Name',
    ' 1   23 0xffffffff80200000  1f3e2d8 kernel (/boot/kernel/kernel)',
    '\tContains modules:',
    '\t\t Id Name',
    '\t\t 18 xenpci',
    '\t\t 96 netmap',
    '\t\t 52 if_lo',
    ...(o.pf ? [' 2    1 0xffffffff82120000    5c0d8 pf.ko (/boot/kernel/pf.ko)', '\tContains modules:', '\t\t Id Name', '\t\t501 pf'] : []),
    '',
  ].join('\n');

const kenv = (o) => ['hw.xen.disable_pv_nics', 'hw.xn.enable_lro', 'hw.xn.num_queues', 'dev.netmap.admode'].map((n) => (o.kenv?.[n] !== undefined ? `${n}="${o.kenv[n]}"` : `kenv: unable to get ${n}`)).join('\n') + '\n';

const netSysctl = (o) => [`net.inet.ip.forwarding: ${o.forwarding ?? 0}`, 'net.inet6.ip6.forwarding: 0', "sysctl: unknown oid 'net.link.bridge'", 'dev.netmap.admode: 0', ''].join('\n');

const netRt = (o) =>
  o.notArranged
    ? `not-arranged ${o.notArranged}\n`
    : [
        `config host=${HOST} up=40001 down=40002 bytes=${BYTES}`,
        `   route to: ${HOST}`,
        'destination: 192.168.122.0',
        '       mask: 255.255.255.0',
        '        fib: 0',
        `  interface: ${o.nic}`,
        '      flags: <UP,DONE,PINNED>',
        ' recvpipe  sendpipe  ssthresh  rtt,msec    mtu        weight    expire',
        '       0         0         0         0      1500         1         0',
        'route-status 0',
        'up-status 0',
        'down-status 0',
        `down-bytes ${o.downBytes ?? BYTES}`,
        `down-sha256 ${o.downSha ?? DOWN_SHA}`,
        '',
      ].join('\n');

const hostRecord = (o) => ({
  source: 'fixture run record (derived)',
  vifs: [{ mac: MAC, devid: 0, bridge: 'xenbr0' }],
  roundTrip: {
    address: HOST,
    upPort: 40001,
    downPort: 40002,
    payloadBytes: BYTES,
    upSha256: UP_SHA,
    downSha256: DOWN_SHA,
    listeningSince: 1700000100000,
    uploads: [
      o.upload ?? { peer: `${GUEST}:61234`, connectedAt: 1700000105000, firstByteAt: 1700000105002, endedAt: 1700000105120, expectedBytes: BYTES, receivedBytes: BYTES, firstDifference: null, outcome: 'complete', detail: `${BYTES} bytes identical` },
    ],
    downloads: [{ peer: `${GUEST}:61235`, connectedAt: 1700000105200, endedAt: 1700000105300, sentBytes: BYTES, outcome: 'sent', detail: `${BYTES} bytes written and the connection closed` }],
    dropped: 0,
  },
});

function insertAfterDisks(text, lines) {
  const l = text.split('\n');
  const at = l.findIndex((x) => /^(cd0 at|Trying to mount root)/.test(x));
  l.splice(at, 0, ...lines);
  return l.join('\n');
}

const NET_INDEX = [
  ['ifconfig', 0, 'ifconfig -a'],
  ['net-sysctl', 1, 'sysctl net.inet.ip.forwarding net.inet6.ip6.forwarding net.link.bridge dev.netmap (one OID at a time)'],
  ['kenv-net', 1, 'kenv hw.xen.disable_pv_nics hw.xn.enable_lro hw.xn.num_queues dev.netmap.admode (one at a time)'],
  ['kldstat', 0, 'kldstat -v'],
  ['net-rt', 0, 'nc round trip with the host listener of /fbxen/net'],
];

function make(name, base, o, verdict, what, evidence) {
  const dir = join(out, name);
  rmSync(dir, { recursive: true, force: true });
  cpSync(join(out, base), dir, { recursive: true });
  const S = (f) => join(dir, 'sections', `${f}.out`);
  const major = Number(name.split('.')[0]);
  const add = [...(o.nic === 'xn0' || o.twin ? xnDmesg(o) : []), ...(o.nic === 're0' || o.twin ? reDmesg : []), ...(o.dmesgExtra ?? [])];
  for (const f of ['dmesg-boot', 'dmesg']) writeFileSync(S(f), insertAfterDisks(readFileSync(S(f), 'utf8'), f === 'dmesg' ? [...add, ...(o.liveExtra ?? [])] : add));
  if (o.nic === 'xn0' || o.twin) writeFileSync(S('sysctl'), readFileSync(S('sysctl'), 'utf8').replace("sysctl: unknown oid 'dev.xn'", xnSysctl({ ...o, major })));
  writeFileSync(S('ifconfig'), ifconfig(o));
  writeFileSync(S('net-sysctl'), netSysctl(o));
  writeFileSync(S('kenv-net'), kenv(o));
  writeFileSync(S('kldstat'), kldstat(o));
  writeFileSync(S('net-rt'), netRt(o));
  writeFileSync(join(dir, 'index'), readFileSync(join(dir, 'index'), 'utf8') + NET_INDEX.map((e) => `${e.join('\t')}\n`).join(''));
  const meta = readFileSync(join(dir, 'meta'), 'utf8')
    .replace(/^run=.*$/m, `run=fx-${name}`)
    .replace(/^collector=.*$/m, 'collector=fbxen-collect 1.2.0')
    .replace(/^fixture-source=.*$/m, `fixture-source=derived (test/probes/derive-netfront-fixtures.mjs from ${base}): ${what}`);
  writeFileSync(join(dir, 'meta'), meta);
  if (o.host !== false) writeFileSync(join(dir, 'host-net.json'), `${JSON.stringify(hostRecord(o), null, 2)}\n`);
  const exp = JSON.parse(readFileSync(join(out, base, 'expect.json'), 'utf8'));
  exp.description = `${what} (derived from ${base} + the netfront sections)`;
  exp.verdicts.netfront = verdict;
  exp.evidence = evidence ? { netfront: evidence } : {};
  writeFileSync(join(dir, 'expect.json'), `${JSON.stringify(exp, null, 2)}\n`);
}

const B13 = '13.2-healthy-derived';
const B14 = '14.1-apicv-native-ipi-derived';
const NETMAP = [
  '225.350094 [ 324] generic_netmap_attach     Emulated adapter for xn0 created (prev was NULL)',
  '225.360221 [ 294] generic_netmap_dtor       Emulated netmap adapter for xn0 destroyed',
  '226.010416 [ 324] generic_netmap_attach     Emulated adapter for xn0 created (prev was NULL)',
  '226.020871 [ 294] generic_netmap_dtor       Emulated netmap adapter for xn0 destroyed',
  '227.112310 [ 324] generic_netmap_attach     Emulated adapter for xn0 created (prev was NULL)',
  '227.120004 [ 294] generic_netmap_dtor       Emulated netmap adapter for xn0 destroyed',
  '228.500112 [ 324] generic_netmap_attach     Emulated adapter for xn0 created (prev was NULL)',
  '228.510987 [1067] generic_netmap_register   Emulated adapter for xn0 activated',
];

make('13.2-netfront-healthy-derived', B13, { nic: 'xn0' }, 'pass', 'xn0 at device/vif/0, Connected, feature-sg feature-gso-tcp4, round trip byte for byte, no forwarding', 'round trip through xn0 to 192.168.122.1: byte for byte both ways');
make('14.1-netfront-emulated-nic-derived', B14, { nic: 're0', kenv: { 'hw.xen.disable_pv_nics': '1' } }, 'fail', 'hw.xen.disable_pv_nics=1: the vif the host gave is the emulated re0 (RealTek 8139C+), no xn', 'is the emulated re0 <RealTek 8139C+ 10/100BaseTX>');
make('14.1-netfront-emulated-nic-no-record-derived', B14, { nic: 're0', kenv: { 'hw.xen.disable_pv_nics': '1' }, host: false }, 'inconclusive', 're0 instead of xn0 as above, but no run record says whether a vif was given', 'whether the toolstack gave this guest a vif is not known');
make('14.1-netfront-offload-forwarding-derived', B14, { nic: 'xn0', forwarding: 1, pf: true }, 'pass', 'a router: net.inet.ip.forwarding=1 and pf.ko loaded, xn0 with TXCSUM and TSO4 on: pass with the checksum offload warning', 'warning: xn0 offloads TXCSUM, TSO4');
make('14.1-netfront-netmap-derived', B14, { nic: 'xn0', liveExtra: NETMAP }, 'pass', "netmap's emulated adapter created/destroyed on xn0 four times, then activated (the lines of opnsense/src#211): pass with the netmap warning", 'opnsense/src/issues/211');
make('13.2-netfront-not-connected-derived', B13, { nic: 'xn0', state: 'InitWait', features: null }, 'fail', 'xn0 attached but stuck in InitWait, no backend features line', 'xenbus_connection_state: InitWait (not Connected)');
make('13.2-netfront-rt-corrupt-derived', B13, { nic: 'xn0', upload: { peer: `${GUEST}:61234`, connectedAt: 1700000105000, firstByteAt: 1700000105002, endedAt: 1700000105120, expectedBytes: BYTES, receivedBytes: BYTES, firstDifference: 65536, outcome: 'corrupt', detail: `byte 65536 differs (${BYTES} of ${BYTES} bytes received)` } }, 'fail', 'the host received the upload with byte 65536 changed', 'first differing byte at offset 65536');
make('13.2-netfront-rt-short-derived', B13, { nic: 'xn0', downBytes: 983040, downSha: sha('short') }, 'fail', 'the guest received 983040 of the 1048576 bytes the host sent', 'the guest received 983040 bytes');
make('13.2-netfront-rt-not-arranged-derived', B13, { nic: 'xn0', notArranged: 'no /fbxen/net on the fbxen medium (this run arranged no round trip)' }, 'inconclusive', 'healthy xn0, but the run gave no round trip', 'the round trip was not run');
