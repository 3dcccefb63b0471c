/*
 * SIMULATION: a fake `xl` for fbxen's end-to-end tests. It is a test double, not Xen. It models the parts of
 * the real xl 4.17 that fbxen uses (see docs/boot-xl.md, "The fake xl"):
 *   - a domain table in $FAKE_XL_STATE/domains.json (domids only grow, like Xen's);
 *   - `info`, `domid`, `list`, `list -l` (JSON like the real one: [{domid, config}], no Domain-0),
 *     `create [-c] [-p] [-q] CFG`, `console`, `shutdown [-w]`, `destroy`, `pause`, `unpause`,
 *     `save`, `restore`, `migrate` (domid changes; the console reattaches), `help`;
 *   - `create -c` behaves as the real one: the domain is built paused, the console is attached, then the
 *     domain is unpaused and the console (stdout) carries the guest's serial output;
 *   - the console client is xenconsole as Xen 4.17 has it (tools/console/client/main.c): `xl console` becomes
 *     it (exec: process name xenconsole), `xl create -c` forks it as a child named xenconsole and exits when it
 *     does. It reads its stdin only when stdin and stdout are terminals (then raw; ^] alone or the
 *     terminal's end ends it); from a pipe it reads nothing, so EOF there does not end it. It ends when the
 *     domain goes away, or on SIGTERM (status 0); it holds /var/lock/xenconsole.DOMID, so a second client
 *     of the same domain fails ("Could not lock"), as the lab's real xl did (docs/lab.md);
 *   - failures as the real one prints them: not a dom0, create failing, unknown domains.
 * The guest is a script ($FAKE_XL_STATE/guest.txt): text lines are written to the console as they are;
 * directives: `@sleep MS`, `@crash` (state c, kept as on_crash="preserve" does), `@poweroff` (the domain
 * goes away), `@hang` (nothing more, ever), `@ignore-shutdown` (the guest ignores `xl shutdown`).
 * `@collect FIXTURE_DIR` boots the guest's fbxen rc.d script (guest/rc.d/fbxen, then the collector from the
 * domain's CD, both the real scripts under dash) against the FreeBSD stand-ins replaying that fixture bundle
 * (test/support/verify/standins) with the STUB nc (test/probes/stubs/nc): the CD is the one in the domain's
 * config, read with bsdtar; the fixture's xn0 MAC is replaced by the vif's; the frame goes to the console.
 * So the guest takes part in the netfront round trip with the host's listener (loopback stands in for the
 * bridge: the test sets FBXEN_NET_LISTEN=127.0.0.1). scenario.json `net: { corruptUp: OFFSET, dropDown: N }`
 * makes the stub nc flip that byte of the upload / keep only N bytes of the download.
 * Behaviour knobs live in $FAKE_XL_STATE/scenario.json: { notDom0, freeMemoryMiB, totalMemoryMiB, xenCommandline,
 * createFails: { stderr }, foreignDomainAppears, runnable (running domains listed `------`, as real xl does) }.
 * Migration knobs (scenario.json): migrateFailsOn: [n], migrateHangsOn: [n] — the nth `xl migrate`
 * (1-based) fails half-way and resumes at the sender, as the real one prints it, or hangs with the domain
 * split into NAME--migratedaway (suspended) and NAME--incoming (paused) until it is killed.
 * `migrate` and `restore` stat the domain's disk files as libxl does when it builds the receiving domain:
 * one that is gone fails them with libxl's words (the sender resumes; docs/lab.md).
 * poweroffLingersMs: N — a domain that powered off (`shutdown`) stays listed, state s, for N ms, as the real
 * one does while its own `xl create` destroys it (on_poweroff="destroy"); a `destroy` meanwhile fails with
 * what the lab's real xl printed for that race ("libxl__devices_destroy failed ... Unable to destroy guest").
 * migrateReceiverDiesOn: [n] — the receiving xl of the nth migrate is killed half-way, as real-xl test C does
 * to the real one (docs/lab.md): the sender resumes and exits 1, and NAME--incoming stays paused.
 * PVH (type = "pvh", Xen 4.10+): as xl 4.17's parser and libxl, a PVH config needs kernel= ("Neither
 * kernel nor bootloader specified"), the kernel file must be readable at build time (xc_dom_kernel_file),
 * `list -l` shows b_info.kernel/cmdline and no type.hvm, and the domain has only the PV console: `console
 * -t serial` attaches it, as xenconsole falls back to it when no serial tty is in xenstore.
 * Every invocation is appended to $FAKE_XL_STATE/calls.log.
 */
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, closeSync, cpSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const stateDir = process.env.FAKE_XL_STATE;
if (!stateDir) {
  process.stderr.write('fake xl: FAKE_XL_STATE is not set (this is a test double)\n');
  process.exit(2);
}
const argv = process.argv.slice(2);
// `__xenconsole DOMID`: the console child `create -c` forks (not an xl command, not logged)
const XENCONSOLE_CHILD = '__xenconsole';
if (argv[0] === XENCONSOLE_CHILD) process.title = 'xenconsole';
else {
  appendFileSync(join(stateDir, 'calls.log'), `${JSON.stringify({ argv, at: Date.now() })}\n`);
  // the command line the real xl shows (ps, pgrep -f), not node's
  process.title = [process.env.FAKE_XL_ARGV0 ?? 'xl', ...argv].join(' ');
}

const scenario = existsSync(join(stateDir, 'scenario.json')) ? JSON.parse(readFileSync(join(stateDir, 'scenario.json'), 'utf8')) : {};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function load() {
  const p = join(stateDir, 'domains.json');
  const db = existsSync(p) ? JSON.parse(readFileSync(p, 'utf8')) : { nextDomid: 1, domains: [] };
  // a powered-off domain's own xl create has destroyed it by now (poweroffLingersMs)
  db.domains = db.domains.filter((d) => d.goneAt === undefined || d.goneAt > Date.now());
  return db;
}
function save(db) {
  const p = join(stateDir, 'domains.json');
  writeFileSync(`${p}.tmp${process.pid}`, JSON.stringify(db, null, 1));
  renameSync(`${p}.tmp${process.pid}`, p);
}
/** A mkdir lock around read-modify-write, as concurrent xl calls must not lose updates. */
function update(fn) {
  const lock = join(stateDir, 'lock');
  for (let i = 0; ; i++) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      if (i > 2000) throw new Error('fake xl: state lock stuck');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
  try {
    const db = load();
    const out = fn(db);
    save(db);
    return out;
  } finally {
    rmdirSync(lock);
  }
}
function find(db, ref) {
  return /^\d+$/.test(ref) ? db.domains.find((d) => d.domid === Number(ref)) : db.domains.find((d) => d.name === ref);
}
function die(msg, code = 1) {
  process.stderr.write(msg.endsWith('\n') ? msg : `${msg}\n`);
  process.exit(code);
}
function notDom0() {
  if (scenario.notDom0) {
    die(
      'xencall: error: Could not obtain handle on privileged command interface: No such file or directory\n' +
        'libxl: error: libxl.c:102:libxl_ctx_alloc: cannot open libxc handle: No such file or directory\n' +
        'cannot init xl context',
    );
  }
}
function unknownDomain(ref) {
  die(`${ref} is an invalid domain identifier (rc=-6)`);
}

/** The subset of xl.cfg syntax fbxen writes: key = "string" | number | [ list ], comments. */
function parseCfg(text) {
  const out = {};
  const re = /([a-z][._0-9a-z]*)\s*=\s*("(?:[^"\\\n]|\\.)*"|[0-9][0-9a-fx]*|\[[^\]]*\])/g;
  const noComments = text.replace(/#.*$/gm, '');
  for (const m of noComments.matchAll(re)) {
    const v = m[2];
    if (v.startsWith('"')) out[m[1]] = v.slice(1, -1);
    else if (v.startsWith('[')) out[m[1]] = [...v.matchAll(/"((?:[^"\\\n]|\\.)*)"/g)].map((x) => x[1]);
    else out[m[1]] = Number(v);
  }
  return out;
}
function diskFromSpec(spec) {
  const d = {};
  const t = spec.indexOf('target=');
  const head = t >= 0 ? spec.slice(0, t) : spec;
  for (const part of head.split(',').map((s) => s.trim()).filter(Boolean)) {
    const [k, v] = part.split('=');
    d[k] = v ?? true;
  }
  const disk = { vdev: d.vdev };
  if (t >= 0) disk.pdev_path = spec.slice(t + 'target='.length);
  if (d.devtype === 'cdrom') Object.assign(disk, { format: disk.pdev_path ? d.format ?? 'raw' : 'empty', removable: 1, is_cdrom: 1 });
  else Object.assign(disk, { format: d.format ?? 'raw', readwrite: d.access === 'ro' || d.access === 'r' ? 0 : 1 });
  return disk;
}
/** xl's prefix match on type= (xl_parse.c): "pv" is tested before "pvh", so "p" or "pv" mean PV. */
function domainType(cfg) {
  const t = cfg.type;
  if (t === undefined) return 'pv';
  if (typeof t === 'string' && t !== '' && 'hvm'.startsWith(t)) return 'hvm';
  if (typeof t === 'string' && t !== '' && 'pv'.startsWith(t)) return 'pv';
  if (typeof t === 'string' && t !== '' && 'pvh'.startsWith(t)) return 'pvh';
  die(`Invalid domain type ${t}.`);
}
function libxlConfig(cfg) {
  const type = domainType(cfg);
  const direct = type === 'hvm' ? {} : { kernel: cfg.kernel, ...(cfg.cmdline !== undefined ? { cmdline: cfg.cmdline } : {}), ...(cfg.ramdisk !== undefined ? { ramdisk: cfg.ramdisk } : {}) };
  return {
    c_info: { type, name: cfg.name, uuid: cfg.uuid },
    b_info: { max_vcpus: cfg.maxvcpus ?? cfg.vcpus ?? 1, max_memkb: (cfg.maxmem ?? cfg.memory ?? 128) * 1024, target_memkb: (cfg.memory ?? 128) * 1024, ...direct, ...(type === 'hvm' ? { 'type.hvm': { serial: cfg.serial } } : type === 'pvh' ? { 'type.pvh': {} } : {}) },
    disks: (cfg.disk ?? []).map(diskFromSpec),
    nics: (cfg.vif ?? []).map((v, devid) => {
      const o = Object.fromEntries(v.split(',').map((kv) => kv.trim().split('=')));
      return { devid, mac: o.mac, bridge: o.bridge, nictype: o.type ?? 'vif_ioemu' };
    }),
    on_crash: cfg.on_crash,
  };
}

/**
 * libxl stats every disk that is not an empty CD when it builds a domain (libxl__device_disk_set_backend,
 * after libxl__domain_make took a domid): a receiving or restoring xl whose disk files are gone fails so
 * (seen on the lab's real xl, docs/lab.md). Returns xl's lines, or undefined when every file is there.
 */
function diskStatFailure(config, domid) {
  const disks = config?.disks ?? [];
  for (let i = 0; i < disks.length; i++) {
    const d = disks[i];
    if (d.format === 'empty') continue;
    try {
      statSync(d.pdev_path ?? '');
    } catch (e) {
      const why = e.code === 'ENOENT' ? 'No such file or directory' : e.code === 'EACCES' ? 'Permission denied' : e.code === 'ENOTDIR' ? 'Not a directory' : e.message;
      return (
        `libxl: error: libxl_device.c:455:libxl__device_disk_set_backend: Disk vdev=${d.vdev} failed to stat: ${d.pdev_path ?? ''}: ${why}\n` +
        `libxl: error: libxl_create.c:1316:initiate_domain_create: Domain ${domid}:Unable to set disk defaults for disk ${i}\n`
      );
    }
  }
  return undefined;
}

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

/** `@collect FIXTURE`: the guest's rc.d script and collector, real scripts under dash, against stand-ins (see the header). */
async function collect(domid, fixture, alive) {
  const dom = load().domains.find((d) => d.domid === domid);
  if (!dom) return;
  const dir = join(stateDir, `guest-${domid}-${Date.now()}`);
  const cd = join(dir, 'cd');
  const bundle = join(dir, 'bundle');
  mkdirSync(cd, { recursive: true });
  try {
    // HVM: the CD drive; PVH: the read-only PV disk xvdb (no emulated IDE), as the real guest finds it by its label.
    const iso = (dom.config.disks ?? []).find((d) => (d.is_cdrom || (d.vdev === 'xvdb' && !d.readwrite)) && d.pdev_path)?.pdev_path;
    if (iso) spawnSync('bsdtar', ['-xf', iso, '-C', cd, 'fbxen']);
    cpSync(resolve(REPO, fixture), bundle, { recursive: true });
    // the guest's xn0 has the MAC its vif was given
    const mac = dom.config.nics?.[0]?.mac;
    const sections = join(bundle, 'sections');
    const old = /xn0: Ethernet address: (\S+)/.exec(existsSync(join(sections, 'dmesg-boot.out')) ? readFileSync(join(sections, 'dmesg-boot.out'), 'utf8') : '')?.[1];
    if (mac && old) for (const f of readdirSync(sections)) writeFileSync(join(sections, f), readFileSync(join(sections, f), 'latin1').split(old).join(mac), 'latin1');
    const rc = readFileSync(join(REPO, 'guest/rc.d/fbxen'), 'utf8').replace('. /etc/rc.subr', `. ${join(REPO, 'test/support/verify/standins/rc.subr')}`);
    writeFileSync(join(dir, 'fbxen.rc'), rc);
    const net = scenario.net ?? {};
    const env = {
      PATH: `${join(REPO, 'test/support/verify/standins')}:${join(REPO, 'test/probes/stubs')}:${process.env.PATH}`,
      HOME: dir,
      FBXEN_STANDIN_BUNDLE: bundle,
      FBXEN_STANDIN_STATE: dir,
      FBXEN_STANDIN_CD: cd,
      fbxen_enable: 'YES',
      fbxen_collector: '/nonexistent/fbxen-collect',
      ...(net.corruptUp !== undefined ? { FBXEN_STUB_NC_CORRUPT_UP: String(net.corruptUp) } : {}),
      ...(net.dropDown !== undefined ? { FBXEN_STUB_NC_DROP_DOWN: String(net.dropDown) } : {}),
    };
    const child = spawn('dash', [join(dir, 'fbxen.rc'), 'start'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
    child.stdout.on('data', (d) => process.stdout.write(d));
    const ended = new Promise((r) => child.on('close', r));
    while (alive() && child.exitCode === null && child.signalCode === null) await Promise.race([ended, sleep(100)]);
    if (child.exitCode === null) child.kill('SIGKILL');
    await ended;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * xenconsole's lock (console_lock: flock of XEN_LOCK_DIR/xenconsole.DOMID, failing at once when held):
 * here a file in the state directory naming its holder, which a dead holder no longer holds.
 */
function consoleLock(domid) {
  const path = join(stateDir, `xenconsole.${domid}.lock`);
  for (;;) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      break;
    } catch {
      const holder = Number(existsSync(path) ? readFileSync(path, 'utf8') : '');
      let held = false;
      try {
        if (holder > 0) held = (process.kill(holder, 0), true);
      } catch {}
      if (held) die(`xenconsole: Could not lock /var/lock/xenconsole.${domid}: Resource temporarily unavailable`, 11);
      rmSync(path, { force: true });
    }
  }
  process.on('exit', () => {
    if (existsSync(path) && readFileSync(path, 'utf8') === String(process.pid)) rmSync(path, { force: true });
  });
}

/**
 * xenconsole: plays the guest script to stdout until the domain goes away. It reads stdin only when stdin
 * and stdout are terminals (interactive); a lone ^] (0x1d) or the terminal's end then ends it. From a pipe
 * nothing is read, and EOF there changes nothing (found on the lab's real xl, docs/lab.md).
 */
async function consoleLoop(domid) {
  consoleLock(domid);
  // its SIGTERM handler ends the loop; main returns 0
  process.on('SIGTERM', () => process.exit(0));
  let stdinClosed = false;
  if (process.stdin.isTTY && process.stdout.isTTY) {
    // raw as xenconsole's cfmakeraw (stty raw: node's setRawMode keeps ONLCR); restored at exit (atexit)
    const saved = spawnSync('stty', ['-g'], { stdio: ['inherit', 'pipe', 'ignore'], encoding: 'utf8' }).stdout?.trim();
    spawnSync('stty', ['raw', '-echo'], { stdio: ['inherit', 'ignore', 'ignore'] });
    if (saved) process.on('exit', () => spawnSync('stty', [saved], { stdio: ['inherit', 'ignore', 'ignore'] }));
    process.stdin.on('data', (b) => {
      if (b.length === 1 && b[0] === 0x1d) stdinClosed = true;
    });
    process.stdin.on('end', () => (stdinClosed = true));
    process.stdin.on('error', () => (stdinClosed = true));
    process.stdin.resume();
  }
  const alive = () => !stdinClosed && load().domains.some((d) => d.domid === domid);
  const scriptPath = join(stateDir, 'guest.txt');
  const script = existsSync(scriptPath) ? readFileSync(scriptPath, 'utf8').split('\n') : ['@hang'];
  const write = (s) => new Promise((r) => (process.stdout.write(s) ? r() : process.stdout.once('drain', r)));
  for (const line of script) {
    if (!alive()) return;
    if (line.startsWith('@sleep ')) {
      const until = Date.now() + Number(line.slice(7));
      while (Date.now() < until && alive()) await sleep(20);
    } else if (line.startsWith('@collect ')) {
      await collect(domid, line.slice(9).trim(), alive);
    } else if (line === '@crash') {
      update((db) => {
        const d = db.domains.find((x) => x.domid === domid);
        if (d) d.state = 'c';
      });
    } else if (line === '@poweroff') {
      update((db) => {
        db.domains = db.domains.filter((x) => x.domid !== domid);
      });
      return;
    } else if (line === '@hang' || line === '@ignore-shutdown') {
      if (line === '@ignore-shutdown') update((db) => {
        const d = db.domains.find((x) => x.domid === domid);
        if (d) d.ignoreShutdown = true;
      });
      if (line === '@hang') break;
    } else {
      await write(`${line}\r\n`);
    }
  }
  while (alive()) await sleep(50);
}

function consoleOf(domid) {
  return consoleLoop(domid).then(() => process.exit(0));
}

/** `create -c`: xl forks the console child (xenconsole) and exits when it has (console_child_report). */
function consoleChild(domid) {
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), XENCONSOLE_CHILD, String(domid)], { stdio: 'inherit' });
  return new Promise((r) => child.on('close', r));
}

if (argv[0] === XENCONSOLE_CHILD) await consoleOf(Number(argv[1]));
const [cmd, ...args] = argv;
/** getopt as xl does it: options with a value (per command) take the next argument. */
const VALUE_OPTS = { console: ['-t', '-n'], migrate: ['-s', '-C'], create: [], shutdown: [], save: [], restore: [] };
const flags = new Set();
const positional = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if ((VALUE_OPTS[cmd] ?? []).includes(a)) {
    flags.add(a);
    i++;
  } else if (/^-[a-zA-Z]+$/.test(a)) for (const c of a.slice(1)) flags.add(`-${c}`);
  else positional.push(a);
}

switch (cmd) {
  case 'info': {
    notDom0();
    const db = load();
    const used = db.domains.reduce((n, d) => n + d.memoryMiB, 0);
    const free = (scenario.freeMemoryMiB ?? 8192) - used;
    process.stdout.write(
      [
        'host                   : fake-dom0',
        'release                : 6.1.0-fake-amd64',
        'machine                : x86_64',
        'nr_cpus                : 4',
        'max_cpu_id             : 3',
        'nr_nodes               : 1',
        'cores_per_socket       : 4',
        'threads_per_core       : 1',
        'virt_caps              : hvm hap shadow',
        `total_memory           : ${scenario.totalMemoryMiB ?? 16384}`,
        `free_memory            : ${free}`,
        'xen_major              : 4',
        'xen_minor              : 17',
        'xen_extra              : .7-fake',
        'xen_version            : 4.17.7-fake',
        'xen_caps               : xen-3.0-x86_64 hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64',
        `xen_commandline        : ${scenario.xenCommandline ?? 'placeholder dom0_mem=2048M,max:2048M'}`,
        'xend_config_format     : 4',
        '',
      ].join('\n'),
    );
    break;
  }
  case 'domid': {
    notDom0();
    const d = find(load(), positional[0] ?? '');
    if (!d || /^\d+$/.test(positional[0] ?? '')) die(`Can't get domid of domain name '${positional[0]}', maybe this domain does not exist.`);
    process.stdout.write(`${d.domid}\n`);
    break;
  }
  case 'list': {
    notDom0();
    const db = load();
    const sel = positional.length ? positional.map((r) => find(db, r) ?? unknownDomain(r)) : db.domains;
    if (flags.has('-l')) {
      process.stdout.write(`${JSON.stringify(sel.map((d) => ({ domid: d.domid, config: d.config })), null, 4)}\n`);
    } else {
      const row = (name, id, mem, vcpus, state) => `${name.padEnd(40)}${String(id).padStart(5)}${String(mem).padStart(6)}${String(vcpus).padStart(6)}     ${state}${'0.0'.padStart(10)}`;
      // scenario.runnable: a running domain listed as the real xl lists one waiting for a CPU (no flag).
      const stateStr = (s) => (s === 'r' && scenario.runnable ? '------' : ({ r: 'r-----', b: '-b----', p: '--p---', s: '---s--', c: '----c-' })[s] ?? '------');
      const lines = ['Name                                        ID   Mem VCPUs\tState\tTime(s)'];
      if (!positional.length) lines.push(row('Domain-0', 0, 2048, 4, 'r-----'));
      for (const d of sel) lines.push(row(d.name, d.domid, d.memoryMiB, d.vcpus, stateStr(d.state)));
      process.stdout.write(`${lines.join('\n')}\n`);
    }
    break;
  }
  case 'create': {
    notDom0();
    const cfgPath = positional[0];
    if (!flags.has('-q')) process.stderr.write(`Parsing config from ${cfgPath}\n`);
    let text;
    try {
      text = readFileSync(cfgPath, 'utf8');
    } catch (e) {
      die(`Failed to read config file: ${cfgPath}: ${e.code === 'ENOENT' ? 'No such file or directory' : e.message}`);
    }
    const cfg = parseCfg(text);
    if (!cfg.name) die(`${cfgPath}: config parsing error: no name specified`); // simplification of xl's parse errors
    const type = domainType(cfg);
    if (type !== 'hvm' && !cfg.kernel && !cfg.bootloader) die('Neither kernel nor bootloader specified');
    // libxl stats the disks once the domain is made (a domid taken), before it builds it (the kernel)
    const noDisk = update((db) => {
      const why = diskStatFailure(libxlConfig(cfg), db.nextDomid);
      if (why) db.nextDomid++;
      return why;
    });
    if (noDisk) die(noDisk);
    if (type !== 'hvm' && cfg.kernel) {
      // libxl reads the kernel when it builds the domain (xc_dom_kernel_file); the domain is never made.
      try {
        closeSync(openSync(cfg.kernel, 'r'));
      } catch (e) {
        const why = e.code === 'ENOENT' ? 'No such file or directory' : e.code === 'EACCES' ? 'Permission denied' : e.message;
        die(`xc: error: panic: xg_dom_core.c:207: failed to open file '${cfg.kernel}': ${why}: Internal error\nlibxl: error: libxl_dom.c:646:libxl__build_pv: xc_dom_kernel_file failed: ${why}\nlibxl: error: libxl_create.c:1714:domcreate_rebuild_done: Domain 1:cannot (re-)build domain: -3`);
      }
    }
    if (scenario.foreignDomainAppears) {
      // Another tool creates a domain of the same name just before ours: xl then refuses ours, slowly.
      update((db) => {
        db.domains.push({ domid: db.nextDomid++, name: cfg.name, uuid: '00000000-0000-4000-8000-00000000f00d', state: 'r', memoryMiB: 256, vcpus: 1, config: { ...libxlConfig(cfg), c_info: { type: 'hvm', name: cfg.name, uuid: '00000000-0000-4000-8000-00000000f00d' } } });
      });
      await sleep(1500);
      die(`libxl: error: libxl_create.c:735:libxl__domain_make: Domain with name "${cfg.name}" already exists.`);
    }
    if (scenario.createFails) die(scenario.createFails.stderr ?? 'libxl: error: libxl_create.c:1214:initiate_domain_create: cannot make domain: -3');
    const domid = update((db) => {
      if (db.domains.some((d) => d.name === cfg.name)) return -1;
      const id = db.nextDomid++;
      db.domains.push({ domid: id, name: cfg.name, uuid: cfg.uuid, state: 'p', memoryMiB: cfg.memory ?? 128, vcpus: cfg.vcpus ?? 1, config: libxlConfig(cfg) });
      return id;
    });
    if (domid < 0) die(`libxl: error: libxl_create.c:735:libxl__domain_make: Domain with name "${cfg.name}" already exists.\nlibxl: error: libxl_create.c:1262:initiate_domain_create: Domain -1:cannot make domain: -6`);
    if (!flags.has('-p')) {
      update((db) => {
        const d = db.domains.find((x) => x.domid === domid);
        if (d && d.state === 'p') d.state = 'r';
      });
    }
    if (flags.has('-c')) await consoleChild(domid);
    break;
  }
  case 'console': {
    notDom0();
    const d = find(load(), positional[0] ?? '') ?? unknownDomain(positional[0]);
    // Only an HVM domain has a QEMU serial port (serial/0/tty in xenstore); for PV and PVH xenconsole finds
    // none and attaches the PV console instead (Xen 4.17 tools/console/client/main.c), so -t serial works.
    // The fake plays the same guest script on either.
    // xl execs xenconsole: this process becomes it
    process.title = 'xenconsole';
    await consoleOf(d.domid);
    break;
  }
  case 'pause':
  case 'unpause': {
    notDom0();
    update((db) => {
      const d = find(db, positional[0] ?? '') ?? unknownDomain(positional[0]);
      d.state = cmd === 'pause' ? 'p' : 'r';
    });
    break;
  }
  case 'shutdown': {
    notDom0();
    const d = find(load(), positional[0] ?? '') ?? unknownDomain(positional[0]);
    process.stderr.write(`Shutting down domain ${d.domid}\n`);
    if (d.ignoreShutdown || d.state === 'c' || d.state === 'p') {
      // The guest does not act on the request; with -w xl waits for ever.
      if (flags.has('-w')) for (;;) await sleep(1000);
      break;
    }
    if (flags.has('-w')) process.stderr.write('Waiting for 1 domains\n');
    await sleep(100);
    update((db) => {
      if (scenario.poweroffLingersMs) {
        const x = db.domains.find((y) => y.domid === d.domid);
        if (x) Object.assign(x, { state: 's', goneAt: Date.now() + scenario.poweroffLingersMs });
      } else db.domains = db.domains.filter((x) => x.domid !== d.domid);
    });
    if (flags.has('-w')) process.stderr.write(`Domain ${d.domid} has been shut down, reason code 0\n`);
    break;
  }
  case 'destroy': {
    notDom0();
    const ref = positional[0] ?? '';
    const gone = update((db) => {
      const d = find(db, ref);
      if (!d) return true;
      if (d.goneAt !== undefined) return 'racing';
      db.domains = db.domains.filter((x) => x !== d);
      return false;
    });
    if (gone === 'racing') {
      const id = /^\d+$/.test(ref) ? ref : String(find(load(), ref)?.domid ?? ref);
      die(
        `libxl: error: libxl_domain.c:1530:devices_destroy_cb: Domain ${id}:libxl__devices_destroy failed\n` +
          `libxl: error: libxl_dom.c:1216:libxl__userdata_path: unable to find domain info for domain ${id}: No such file or directory\n` +
          `libxl: error: libxl_domain.c:1137:domain_destroy_callback: Domain ${id}:Unable to destroy guest\n` +
          `libxl: error: libxl_domain.c:1064:domain_destroy_cb: Domain ${id}:Destruction of domain failed`,
      );
    }
    if (gone) {
      if (/^\d+$/.test(ref)) {
        die(
          `libxl: error: libxl_domain.c:1319:libxl__destroy_domid: Domain ${ref}:Non-existant domain\n` +
            `libxl: error: libxl_domain.c:1273:domain_destroy_callback: Domain ${ref}:Unable to destroy guest\n` +
            `libxl: error: libxl_domain.c:1200:domain_destroy_cb: Domain ${ref}:Destruction of domain failed\n` +
            'destroy failed (rc=-21)',
        );
      }
      unknownDomain(ref);
    }
    break;
  }
  case 'save': {
    notDom0();
    const [ref, file] = positional;
    const d = find(load(), ref ?? '') ?? unknownDomain(ref);
    writeFileSync(file, Buffer.concat([Buffer.from('Xen saved domain, xl format\n \0 \r'), Buffer.from(JSON.stringify(d))]));
    update((db) => {
      db.domains = db.domains.filter((x) => x.domid !== d.domid);
    });
    break;
  }
  case 'restore': {
    notDom0();
    const file = positional.at(-1);
    const buf = readFileSync(file);
    if (!buf.subarray(0, 32).equals(Buffer.from('Xen saved domain, xl format\n \0 \r'))) die('File has wrong magic number - corrupt or for a different tool?');
    const saved = JSON.parse(buf.subarray(32).toString('utf8'));
    process.stderr.write(`Loading new save file ${file} (new xl fmt info 0x3/0x0/1342)\n Savefile contains xl domain config in JSON format\nParsing config from <saved>\n`);
    const failed = update((db) => {
      // the domid is taken before the disks are looked at, and the half-made domain destroyed
      const domid = db.nextDomid++;
      const why = diskStatFailure(saved.config, domid);
      if (!why) db.domains.push({ ...saved, domid, state: flags.has('-p') ? 'p' : 'r' });
      return why;
    });
    if (failed) die(failed);
    break;
  }
  case 'help': {
    process.stdout.write(
      ['Usage xl [-vfNtT] <subcommand> [args]', '', 'xl full list of subcommands:', '', ' create              Create a domain from config file <filename>', ' list                List information about all/some domains', ' destroy             Terminate a domain immediately', ' shutdown            Issue a shutdown signal to a domain', ' console             Attach to domain\'s console', ' save                Save a domain state to restore later', ' migrate             Migrate a domain to another host', ' restore             Restore a domain from a saved state', ' migrate-receive     Restore a domain from a saved state', ''].join('\n'),
    );
    break;
  }
  case 'migrate': {
    notDom0();
    const ref = positional[0] ?? '';
    const d = find(load(), ref) ?? unknownDomain(ref);
    const n = update((db) => (db.migrations = (db.migrations ?? 0) + 1));
    // The receiver builds the domain from the config it was sent and stats its disks first (libxl), then
    // fails; the sender's stream breaks and it resumes the domain (the lab's real xl, docs/lab.md).
    const noDisk = update((db) => {
      const why = diskStatFailure(d.config, db.nextDomid);
      if (why) db.nextDomid++;
      return why;
    });
    if (noDisk) {
      await sleep(50);
      die(
        'migration target: Ready to receive domain.\nSaving to migration stream new xl format (info 0x3/0x0/1342)\n' +
          'Loading new save file <incoming migration stream> (new xl fmt info 0x3/0x0/1342)\n Savefile contains xl domain config in JSON format\nParsing config from <saved>\n' +
          noDisk +
          'migration target: Domain creation failed (code -3).\n' +
          // the sender's stream to a receiver gone, as real-xl test C recorded it (there the receiver was killed)
          'libxl: error: libxl_aoutils.c:326:datacopier_writable: unexpected poll event 0xc on fd 15 (should be POLLOUT) writing emulator record during copy of save v2 stream\n' +
          'migration sender: libxl_domain_suspend failed (rc=-3)\n' +
          'libxl: info: libxl_exec.c:117:libxl_report_child_exitstatus: migration transport process [4242] exited with error status 1\n' +
          'Migration failed, resuming at sender.',
      );
    }
    if ((scenario.migrateFailsOn ?? []).includes(n)) {
      await sleep(50);
      die(
        'migration target: Ready to receive domain.\nSaving to migration stream new xl format (info 0x3/0x0/1342)\n' +
          `libxl: error: libxl_stream_write.c:350:libxl__xc_domain_save_done: Domain ${d.domid}:saving domain: domain did not respond to suspend request: Invalid argument\n` +
          'migration sender: libxl_domain_suspend failed (rc=-8)\nMigration failed, resuming at sender.',
      );
    }
    if ((scenario.migrateReceiverDiesOn ?? []).includes(n)) {
      update((db) => {
        const x = db.domains.find((y) => y.domid === d.domid);
        db.domains.push({ ...x, name: `${d.name}--incoming`, domid: db.nextDomid++, state: 'p' });
      });
      await sleep(50);
      // as real-xl test C recorded it on the lab (Xen 4.17.7)
      die(
        'migration target: Ready to receive domain.\nSaving to migration stream new xl format (info 0x3/0x0/1342)\n' +
          'libxl: error: libxl_aoutils.c:326:datacopier_writable: unexpected poll event 0xc on fd 15 (should be POLLOUT) writing emulator record during copy of save v2 stream\n' +
          'migration sender: libxl_domain_suspend failed (rc=-3)\n' +
          'libxl: info: libxl_exec.c:117:libxl_report_child_exitstatus: migration transport process [4242] exited with error status 137\n' +
          'Migration failed, resuming at sender.',
      );
    }
    if ((scenario.migrateHangsOn ?? []).includes(n)) {
      update((db) => {
        const x = db.domains.find((y) => y.domid === d.domid);
        x.name = `${d.name}--migratedaway`;
        x.state = 's';
        db.domains.push({ ...x, name: `${d.name}--incoming`, domid: db.nextDomid++, state: 'p' });
      });
      process.stderr.write('migration target: Ready to receive domain.\nSaving to migration stream new xl format (info 0x3/0x0/1342)\n');
      for (;;) await sleep(1000);
    }
    update((db) => {
      const x = db.domains.find((y) => y.domid === d.domid);
      x.domid = db.nextDomid++;
    });
    process.stderr.write('migration sender: Target has acknowledged transfer.\nMigration successful.\n');
    break;
  }
  default:
    die(`fake xl: command ${cmd} is not simulated`, 2);
}
