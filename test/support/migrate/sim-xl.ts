/**
 * SIMULATION — an in-process stand-in for `xl` with a FreeBSD guest on its serial console, for
 * migrate-test's flow tests. Not Xen, not FreeBSD. It implements the Runner port (what src/ uses for
 * every subprocess) and behaves as the real xl 4.17 documents it (xl.md §4.4, §4.5), failures included:
 *   - `xl help`, `xl list`; `xl migrate -s '' DOMID 'xl migrate-receive'`: the guest pauses for the
 *     migration, comes back under a new domid, and the old console client exits (xenconsole does when its
 *     domain goes), so the console must be reattached;
 *   - a migration that fails half-way: "Migration failed, resuming at sender." (exit 1), same domid;
 *   - one that hangs: the domain stays as NAME--migratedaway (suspended) with a paused NAME--incoming,
 *     until the caller's timeout (then a TimeoutError, as the execa runner throws);
 *   - one after which the domain vanishes;
 *   - `xl save DOMID FILE` / `xl restore FILE` (a new domid; the file holds the domain);
 *   - `xl console -t serial DOMID`: a stream whose stdin is the guest's keyboard. The guest answers a
 *     login prompt, runs `sh .../fbxen-heartbeat ... &` (beats on a virtual clock, none while paused,
 *     none reach a console that is not attached — QEMU's pty drops them), `touch STOPFILE`, and
 *     `sh .../fbxen-collect --frame --run R --phase P` (the bundle the scenario gives, framed twice).
 * PVH (scenario type 'pvh'): `xl list -l` says c_info.type pvh, and the domain has only the PV console:
 * `xl console -t serial` attaches it, as xenconsole falls back to it when xenstore has no serial tty (Xen
 * 4.17 tools/console/client/main.c; the fake xl does the same); `-t pv` attaches it too.
 * Time: the guest's clock is virtual and runs `speed` times faster than the host's, so seconds of
 * heartbeat take a fraction of a second; `now()` is that clock for the console capture's stamps.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { PassThrough, Writable } from 'node:stream';
import { TimeoutError } from '../../../src/core/errors.js';
import { CommandFailedError, formatCommand, type RunOptions, type RunResult, type Runner, type StreamingProcess } from '../../../src/core/exec/runner.js';
import { formatBeat, formatDiskRound, formatInfo } from '../../../src/core/migrate/heartbeat.js';
import { encodeConsoleFrame, packBundle, type Bundle } from '../../../src/core/verify/index.js';

export interface SimScenario {
  name: string;
  /** the bundle at pre-migrate, and after migration N */
  before: Bundle;
  after: (n: number) => Bundle;
  /** migrations (1-based count of migrate/save calls) that fail half-way, hang, or lose the domain */
  failOn?: number[];
  hangOn?: number[];
  vanishOn?: number[];
  /** the guest has no fbxen-heartbeat */
  noHeartbeat?: boolean;
  /** after migration N the guest is hung: no output, no answers */
  hungAfter?: number[];
  /** the guest's kernel dies as migration N ends: xl lists the domain crashed (on_crash="preserve"), no more output */
  crashAfter?: number[];
  /** ... or when the collector of post-migrate-N starts (so while fbxen waits for its frame) */
  crashInCollect?: number[];
  /** virtual ms the domain is paused per migration */
  pauseMs?: number;
  /** the timecounter restarts from another clock on resume (another host) */
  counterJump?: boolean;
  speed?: number;
  /** the console shows a login prompt until `root` is typed */
  loginPrompt?: boolean;
  /** with --load disk: after migration N, read-back differs from what was written */
  diskCorruptAfter?: number;
  /** xl is installed but no hypervisor answers: every command fails as Debian's xen-utils-wrapper does */
  noHypervisor?: boolean;
  /** `xl help` works but lists neither migrate nor save (an xl built without them) */
  noMigrateCommand?: boolean;
  /** the domain's type (default hvm); pvh: list -l says so and only the PV console exists */
  type?: 'hvm' | 'pvh';
}

interface Dom {
  domid: number;
  name: string;
  state: 'r' | 'p' | 's' | 'c';
}

const MOD = 4294967296;
const WALL_BASE = 1_795_000_000;

export class SimXl implements Runner {
  readonly calls: string[] = [];
  /** console clients started inside fbxen's terminal wrapper (xl-commands.ts CONSOLE_ON_A_TERMINAL) */
  wrappedConsoles = 0;
  domains: Dom[] = [];
  private nextDomid = 5;
  private migrations = 0;
  private readonly t0 = Date.now();
  private readonly speed: number;
  private running = true;
  private hung = false;
  private counterBase = 12345.678;
  private loggedIn: boolean;
  /** virtual [start, end] of every pause, for the tests' expected downtime */
  readonly pauses: Array<[number, number]> = [];
  /** console clients by domid (xenconsole per domain); output goes to the running domain's */
  private consoles = new Map<number, { out: PassThrough; end: () => void }>();
  private heartbeats = new Map<string, { seq: number; next: number; timer: NodeJS.Timeout }>();
  private rand = 1;

  constructor(readonly scenario: SimScenario) {
    this.speed = scenario.speed ?? 20;
    this.loggedIn = !scenario.loginPrompt;
    this.domains.push({ domid: this.nextDomid++, name: scenario.name, state: 'r' });
  }

  /** the guest's and the capture's clock: virtual ms since the epoch */
  now = (): number => 1_700_000_000_000 + (Date.now() - this.t0) * this.speed;

  /** Uniform in ±1 ms (mulberry32: integer arithmetic, so the draws are as uniform as they claim). */
  private jitter(): number {
    this.rand = (this.rand + 0x6d2b79f5) | 0;
    let t = Math.imul(this.rand ^ (this.rand >>> 15), 1 | this.rand);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return (((t ^ (t >>> 14)) >>> 0) / 4294967296 - 0.5) * 2;
  }

  private emit(text: string): void {
    // Output reaches the host only through an attached console (QEMU's pty drops it otherwise).
    if (!this.running || this.hung) return;
    const dom = this.domains.find((d) => d.name === this.scenario.name && d.state === 'r');
    if (dom) this.consoles.get(dom.domid)?.out.write(text);
  }

  private sleepReal(ms: number): Promise<void> {
    return new Promise((r) => setTimeout(r, ms));
  }

  private async pause(virtualMs: number): Promise<void> {
    // One reading of the clock for both: beats due up to the pause were written before the guest stopped.
    const start = this.now();
    for (const run of this.heartbeats.keys()) this.beat(run, start);
    this.running = false;
    await this.sleepReal(virtualMs / this.speed);
    const end = this.now();
    this.running = true;
    this.pauses.push([start, end]);
    if (this.scenario.counterJump) this.counterBase += 987.654321;
    // Beats scheduled during the pause are simply not written: the guest was not running; the sleep that
    // was running ends at once (its deadline passed while the clock jumped).
    for (const hb of this.heartbeats.values()) hb.next = Math.max(hb.next, end);
  }

  private find(ref: string): Dom | undefined {
    return /^\d+$/.test(ref) ? this.domains.find((d) => d.domid === Number(ref)) : this.domains.find((d) => d.name === ref);
  }

  private result(args: readonly string[], exitCode: number, stdout = '', stderr = ''): RunResult {
    return { command: formatCommand('xl', args), exitCode, stdout, stderr, durationMs: 0 };
  }

  private closeConsoleOf(domid: number): void {
    this.consoles.get(domid)?.end();
  }

  async run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
    this.calls.push(formatCommand(file, args));
    if (file !== 'xl') throw new Error(`SimXl only simulates xl, not ${file}`);
    const r = await this.dispatch(args, opts);
    if (r.exitCode !== 0 && !opts.allowFailure) throw new CommandFailedError(r);
    return r;
  }

  private async dispatch(args: readonly string[], opts: RunOptions): Promise<RunResult> {
    const [cmd, ...rest] = args;
    // What this machine's own xl (Debian's wrapper, no Xen booted) prints for every command, help included.
    if (this.scenario.noHypervisor) return this.result(args, 1, '', "ERROR:  Can't find hypervisor information in sysfs!\n");
    switch (cmd) {
      case 'info':
        return this.result(args, 0, ['host                   : sim-dom0', 'release                : 6.1.0-sim-amd64', 'nr_cpus                : 4', 'total_memory           : 16383', 'free_memory            : 8192', 'xen_major              : 4', 'xen_minor              : 17', 'xen_version            : 4.17.3', ''].join('\n'));
      case 'help':
        return this.result(
          args,
          0,
          `Usage xl [-vfNtT] <subcommand> [args]\n\nxl full list of subcommands:\n\n create        Create a domain from config file <filename>\n list          List information about all/some domains\n${this.scenario.noMigrateCommand ? '' : ' migrate       Migrate a domain to another host\n save          Save a domain state to restore later\n restore       Restore a domain from a saved state\n'} console       Attach to domain's console\n`,
        );
      case 'list': {
        if (rest[0] === '-l') {
          const sel = rest[1] === undefined ? this.domains : this.domains.filter((d) => d.name === rest[1] || String(d.domid) === rest[1]);
          if (rest[1] !== undefined && sel.length === 0) return this.result(args, 1, '', `${rest[1]} is an invalid domain identifier (rc=-6)\n`);
          return this.result(args, 0, `${JSON.stringify(sel.map((d) => ({ domid: d.domid, config: { c_info: { type: this.scenario.type ?? 'hvm', name: d.name } } })), null, 4)}\n`);
        }
        const flags = (d: Dom) => ({ r: 'r-----', p: '--p---', s: '---s--', c: '----c-' })[d.state];
        const rows = ['Name                                        ID   Mem VCPUs\tState\tTime(s)', `${'Domain-0'.padEnd(40)}    0  2048     4     r-----     100.0`, ...this.domains.map((d) => `${d.name.padEnd(40)}${String(d.domid).padStart(5)}  1024     2     ${flags(d)}       9.9`)];
        return this.result(args, 0, `${rows.join('\n')}\n`);
      }
      case 'migrate':
      case 'save': {
        const ref = cmd === 'migrate' ? rest.filter((a, i) => !(a === '-s' || rest[i - 1] === '-s'))[0]! : rest[0]!;
        const d = this.find(ref);
        if (!d) return this.result(args, 1, '', `${ref} is an invalid domain identifier (rc=-6)\n`);
        const n = ++this.migrations;
        const pauseMs = this.scenario.pauseMs ?? 150;
        if (this.scenario.hangOn?.includes(n)) {
          this.running = false;
          d.name = `${this.scenario.name}--migratedaway`;
          d.state = 's';
          this.domains.push({ domid: this.nextDomid++, name: `${this.scenario.name}--incoming`, state: 'p' });
          await this.sleepReal(opts.timeoutMs ?? 1e9);
          throw new TimeoutError(`${formatCommand('xl', args)} did not finish within ${opts.timeoutMs} ms`, { hint: 'raise --timeout, or check why the command hangs' });
        }
        if (this.scenario.failOn?.includes(n)) {
          await this.pause(pauseMs / 2);
          this.nextDomid++; // the receiver's NAME--incoming came and went
          return this.result(args, 1, '', 'migration target: Ready to receive domain.\nSaving to migration stream new xl format (info 0x3/0x0/1342)\nlibxl: error: libxl_stream_write.c:350:libxl__xc_domain_save_done: Domain 5:saving domain: domain did not respond to suspend request: Invalid argument\nmigration sender: libxl_domain_suspend failed (rc=-8)\nMigration failed, resuming at sender.\n');
        }
        // The receiver builds NAME--incoming (paused) while the sender transfers; at the end the
        // sender's copy goes and the incoming one takes the name and runs.
        const incoming: Dom | undefined = cmd === 'migrate' ? { domid: this.nextDomid++, name: `${this.scenario.name}--incoming`, state: 'p' } : undefined;
        if (incoming) this.domains.push(incoming);
        await this.pause(pauseMs);
        this.closeConsoleOf(d.domid);
        if (incoming) this.domains = this.domains.filter((x) => x !== incoming);
        if (this.scenario.vanishOn?.includes(n)) {
          this.domains = this.domains.filter((x) => x !== d);
          return this.result(args, 0, '', 'Migration successful.\n');
        }
        if (cmd === 'save') {
          await writeFile(rest[1]!, `Xen saved domain, xl format\n \0 \r${JSON.stringify(d)}`);
          this.domains = this.domains.filter((x) => x !== d);
          this.running = false;
          return this.result(args, 0, '', `Saving to ${rest[1]} new xl format (info 0x3/0x0/1342)\n`);
        }
        d.domid = incoming!.domid;
        if (this.scenario.hungAfter?.includes(n)) this.hung = true;
        if (this.scenario.crashAfter?.includes(n)) this.crash(d);
        return this.result(args, 0, '', 'migration target: Ready to receive domain.\nmigration sender: Target has acknowledged transfer.\nmigration sender: Giving target permission to start.\nmigration target: Got permission, starting domain.\nmigration target: Domain started successsfully.\nmigration sender: Target reports successful startup.\nMigration successful.\n');
      }
      case 'restore': {
        const text = await readFile(rest.at(-1)!, 'latin1').catch(() => '');
        if (!text.startsWith('Xen saved domain, xl format\n \0 \r')) return this.result(args, 1, '', 'File has wrong magic number - corrupt or for a different tool?\n');
        const saved = JSON.parse(text.slice(32)) as Dom;
        await this.pause(30);
        const restored: Dom = { ...saved, domid: this.nextDomid++, state: 'r' };
        this.domains.push(restored);
        if (this.scenario.hungAfter?.includes(this.migrations)) this.hung = true;
        if (this.scenario.crashAfter?.includes(this.migrations)) this.crash(restored);
        return this.result(args, 0, '', '');
      }
      default:
        return this.result(args, 2, '', `SimXl: xl ${cmd} is not simulated\n`);
    }
  }

  /** the guest's kernel dies: nothing more on its console, and the domain stays listed crashed (on_crash="preserve") */
  private crash(d: Dom): void {
    this.hung = true;
    d.state = 'c';
  }

  stream(wrapperOrFile: string, wrapperOrArgs: readonly string[]): StreamingProcess {
    // fbxen runs `xl console` inside its terminal wrapper (sh -c CONSOLE_ON_A_TERMINAL fbxen-console xl ...):
    // the guest sees the same keyboard; the wrapper's end on our stdin's EOF is modelled by the end below.
    const wrapped = wrapperOrFile === 'sh' && wrapperOrArgs[2] === 'fbxen-console';
    if (wrapped) this.wrappedConsoles++;
    const file = wrapped ? wrapperOrArgs[3]! : wrapperOrFile;
    const args = wrapped ? wrapperOrArgs.slice(4) : wrapperOrArgs;
    this.calls.push(formatCommand(file, args));
    const out = new PassThrough();
    const [cmd, , , ref] = args;
    const d = cmd === 'console' ? this.find(ref ?? '') : undefined;
    let finish!: (r: RunResult) => void;
    const done = new Promise<RunResult>((r) => (finish = r));
    if (!d) {
      out.end();
      finish(this.result(args, 1, '', 'invalid domain'));
      return { stdout: out, stdin: null, done: done.then((r) => Promise.reject(new CommandFailedError(r))), kill: () => undefined };
    }
    let line = '';
    const stdin = new Writable({
      write: (chunk: Buffer, _enc, cb) => {
        line += chunk.toString('utf8');
        let nl: number;
        while ((nl = line.indexOf('\n')) >= 0) {
          const typed = line.slice(0, nl);
          line = line.slice(nl + 1);
          this.onTyped(typed);
        }
        cb();
      },
    });
    const domid = d.domid;
    const end = () => {
      if (this.consoles.get(domid)?.out === out) this.consoles.delete(domid);
      out.end();
      finish(this.result(args, 0));
    };
    stdin.on('finish', end);
    this.consoles.set(domid, { out, end });
    return { stdout: out, stdin, done, kill: end };
  }

  /** The guest's shell reading a line from the serial console. */
  private onTyped(typed: string): void {
    if (!this.running || this.hung) return;
    this.emit(`${typed}\r\n`); // tty echo
    if (!this.loggedIn) {
      if (typed === 'root') {
        this.loggedIn = true;
        this.emit('root@fbxen:~ # ');
      } else this.emit('\r\nFreeBSD/amd64 (fbxen) (ttyu0)\r\n\r\nlogin: ');
      return;
    }
    const words = typed.trim().split(/\s+/);
    const arg = (k: string) => words[words.indexOf(k) + 1] ?? '';
    if (words[0] === 'sh' && words[1]?.endsWith('fbxen-heartbeat')) {
      if (this.scenario.noHeartbeat) return this.emit(`sh: ${words[1]}: No such file or directory\r\n`);
      return this.startHeartbeat(arg('--run'), arg('--load'));
    }
    if (words[0] === 'touch' && words[1]?.startsWith('/tmp/fbxen-heartbeat-')) {
      const run = words[1].replace(/^\/tmp\/fbxen-heartbeat-|\.stop$/g, '');
      const hb = this.heartbeats.get(run);
      if (hb) clearInterval(hb.timer);
      this.heartbeats.delete(run);
      return this.emit('root@fbxen:~ # ');
    }
    if (words[0] === 'sh' && words[1]?.endsWith('fbxen-collect')) {
      const run = arg('--run');
      const phase = arg('--phase');
      const m = /^post-migrate-(\d+)$/.exec(phase);
      const running = this.domains.find((x) => x.state === 'r');
      if (m && running && this.scenario.crashInCollect?.includes(Number(m[1]))) return this.crash(running);
      const base = m ? this.scenario.after(Number(m[1])) : this.scenario.before;
      const bundle: Bundle = { ...base, meta: { ...base.meta, run, phase } };
      void packBundle(bundle).then((payload) => {
        setTimeout(() => this.emit(encodeConsoleFrame(payload, run, phase).replace(/\n/g, '\r\n').replace(/(FBXEN1 D \S+ 3 )/, 'xn0: link state changed to UP\r\n$1')), 5);
      });
      return;
    }
    if (typed.trim()) this.emit(`${words[0]}: not found\r\nroot@fbxen:~ # `);
    else this.emit('root@fbxen:~ # ');
  }

  private startHeartbeat(run: string, load: string): void {
    this.emit(formatInfo(run, { timecounter: 'XENTIMER', frequency: 1e9, mask: BigInt(MOD - 1), periodMs: 10 }) + '\r\n');
    const hb = { seq: 0, next: this.now(), timer: setInterval(() => this.beat(run), 2) };
    this.heartbeats.set(run, hb);
    if (load === 'disk' || load === 'all') {
      let round = 0;
      const disk = setInterval(() => {
        if (!this.heartbeats.has(run)) return clearInterval(disk);
        if (!this.running || this.hung) return;
        round++;
        const corrupt = this.scenario.diskCorruptAfter !== undefined && this.migrations >= this.scenario.diskCorruptAfter;
        this.emit(`${formatDiskRound(run, round, !corrupt)}\r\n`);
      }, 5);
    }
  }

  private beat(run: string, upTo?: number): void {
    const hb = this.heartbeats.get(run);
    if (!hb || !this.running || this.hung) return;
    const now = upTo ?? this.now();
    while (hb.next <= now) {
      hb.seq++;
      const t = hb.next / 1000;
      const wall = Math.floor(t - 1_700_000_000 + WALL_BASE + 0.25);
      const counter = BigInt(Math.floor(((t + this.counterBase) * 1e9) % MOD));
      this.emit(`${formatBeat(run, { seq: hb.seq, wall, counter })}\r\n`);
      hb.next += 12 + this.jitter();
    }
  }

  stopAll(): void {
    for (const hb of this.heartbeats.values()) clearInterval(hb.timer);
    this.heartbeats.clear();
  }
}
