/**
 * Runs guest/fbxen-collect (and guest/rc.d/fbxen) under dash with the FreeBSD stand-ins of
 * test/support/verify/standins on PATH. The stand-ins are SIMULATIONS: they replay the sections of a
 * fixture bundle the way FreeBSD's sysctl, vmstat, dmesg, camcontrol, mount, sha256 and uuencode print
 * them, failures included (unknown OIDs, a CD that does not read). No FreeBSD binary runs here.
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile, copyFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const REPO = join(import.meta.dirname, '../../..');
export const COLLECTOR = join(REPO, 'guest/fbxen-collect');
export const RC_SCRIPT = join(REPO, 'guest/rc.d/fbxen');
export const STANDINS = join(import.meta.dirname, 'standins');

export interface CollectorRun {
  code: number;
  stdout: Buffer;
  stderr: string;
  ms: number;
}

export interface GuestOptions {
  /** the fixture bundle the stand-ins replay */
  bundleDir: string;
  /** the fbxen CD's content (a run id in fbxen/run), when the guest has the fbxen CD */
  cd?: { run: string; phase?: string; withCollector?: boolean; /** attached as a disk found by its ISO 9660 label, not as cdN */ byLabel?: boolean };
  hang?: string[];
  missing?: string[];
}

function exec(file: string, args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000): Promise<CollectorRun> {
  const started = Date.now();
  return new Promise((resolve) => {
    let snapshot = '';
    const child = execFile(file, args, { env, encoding: 'buffer', maxBuffer: 64 * 1024 * 1024, timeout: timeoutMs }, (err, stdout, stderr) => {
      clearTimeout(watch);
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : (err as { signal?: string }).signal ? 128 + 15 : -1) : 0;
      resolve({ code, stdout, stderr: stderr.toString('utf8') + snapshot, ms: Date.now() - started });
    });
    // A run that takes far longer than usual: keep the process tree for the failure message.
    const watch = setTimeout(() => {
      try {
        snapshot = `\n[harness] still running after 20 s; process tree:\n${execFileSync('ps', ['-eo', 'pid,ppid,stat,wchan:16,args', '--forest'], { encoding: 'utf8' })
          .split('\n')
          .filter((l) => /dash|sleep|sha256|uuencode|sed|tar|gzip|fbxen/.test(l))
          .join('\n')} (collector pid ${child.pid})`;
      } catch {
        /* ps missing: no snapshot */
      }
    }, 20_000);
  });
}

/** A guest: stand-in state and CD content in a temporary directory. */
export async function makeGuest(opts: GuestOptions): Promise<{ env: NodeJS.ProcessEnv; dir: string; dispose: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'fbxen-guest-'));
  const env: NodeJS.ProcessEnv = {
    PATH: `${STANDINS}:${process.env.PATH ?? '/usr/bin:/bin'}`,
    FBXEN_STANDIN_BUNDLE: opts.bundleDir,
    FBXEN_STANDIN_STATE: dir,
    FBXEN_STANDIN_HANG: (opts.hang ?? []).join(' '),
    FBXEN_STANDIN_MISSING: (opts.missing ?? []).join(' '),
    HOME: dir,
  };
  if (opts.cd) {
    const cd = join(dir, 'cd');
    await mkdir(join(cd, 'fbxen'), { recursive: true });
    await writeFile(join(cd, 'fbxen/run'), `${opts.cd.run}\n`);
    if (opts.cd.phase) await writeFile(join(cd, 'fbxen/phase'), `${opts.cd.phase}\n`);
    if (opts.cd.withCollector) await copyFile(COLLECTOR, join(cd, 'fbxen/collect'));
    env.FBXEN_STANDIN_CD = cd;
    if (opts.cd.byLabel) {
      const labelDev = join(dir, 'iso9660-FBXEN');
      await writeFile(labelDev, '');
      env.FBXEN_STANDIN_LABEL_DEV = labelDev;
      env.fbxen_label_dev = labelDev;
    }
  }
  return { env, dir, dispose: () => rm(dir, { recursive: true, force: true }) };
}

/** Runs the collector under `shell` (dash: the ash family FreeBSD's sh belongs to; posh: strict POSIX). */
export async function runCollector(opts: GuestOptions, args: string[], shell = 'dash'): Promise<CollectorRun> {
  const guest = await makeGuest(opts);
  try {
    return await exec(shell, [COLLECTOR, ...args], guest.env);
  } finally {
    await guest.dispose();
  }
}

/** Runs the rc.d script's start with a stand-in rc.subr (the real one is FreeBSD's /etc/rc.subr). */
export async function runRcScript(opts: GuestOptions, installedCollector = COLLECTOR): Promise<CollectorRun> {
  const guest = await makeGuest(opts);
  try {
    const script = (await readFile(RC_SCRIPT, 'utf8')).replace('. /etc/rc.subr', `. ${join(STANDINS, 'rc.subr')}`);
    const copy = join(guest.dir, 'fbxen.rc');
    await writeFile(copy, script);
    return await exec('dash', [copy, 'start'], { ...guest.env, fbxen_enable: 'YES', fbxen_collector: installedCollector });
  } finally {
    await guest.dispose();
  }
}

export { exec as execTool };
