/**
 * TEST-ONLY: the stand-in guest of fbxen's own real-Xen tests (docs/lab.md, "The stand-in guest").
 *
 * FBXEN_TEST_STANDIN_GUEST=FILE (a JSON `{ "kernel": PATH, "ramdisk": PATH, "cmdline": STRING }`, paths
 * relative to FILE) makes `fbxen boot --type pvh` boot that kernel and ramdisk (a Linux test double that
 * replays a FreeBSD bundle) instead of the image's FreeBSD kernel: no kernel check, no kernel environment.
 * It exists so the evidence round trip (fbxen → CD → blkback → guest → console → fbxen) can be tested on a
 * real Xen without a FreeBSD that boots under emulation. It is no product feature: an environment
 * variable, never an option or a config key; refused without --type pvh, with --kernel or --kernel-env,
 * and for XAPI; a warning on stderr, and the plan, run.json and the report say "stand-in guest, test-only".
 * Its verdicts say nothing about FreeBSD.
 */
import { copyFile, chmod, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import { InputError, UsageError } from '../errors.js';
import { sha256File } from '../util/sha256.js';

export const STANDIN_ENV = 'FBXEN_TEST_STANDIN_GUEST';
/** How the plan, run.json and the report name it. */
export const STANDIN_LABEL = 'stand-in guest, test-only';
export const STANDIN_WARNING = `${STANDIN_ENV} is set: booting the TEST-ONLY stand-in guest it names instead of the image's FreeBSD kernel; the verdicts replay a recorded bundle and say nothing about FreeBSD (docs/lab.md)`;

const MAX_SPEC_BYTES = 64 * 1024;
const MAX_FILE_BYTES = 512 * 1024 * 1024;
/** The run directory's copies (xl.cfg names them there, or the remote dom0's copies of them). */
export const STANDIN_KERNEL_FILE = 'standin-kernel';
export const STANDIN_RAMDISK_FILE = 'standin-ramdisk';

const SpecSchema = z.object({
  kernel: z.string().min(1).max(4096),
  ramdisk: z.string().min(1).max(4096),
  // xl.cfg quotes it without escapes: printable ASCII without quotes or backslashes.
  cmdline: z.string().max(1024).regex(/^[\x20-\x7e]*$/, 'printable ASCII only').refine((s) => !/["'\\]/.test(s), 'no quotes or backslashes'),
  // A PV NIC (fbxen's vif on the bridge) for a stand-in that answers the round trip through it.
  vif: z.boolean().optional(),
}).strict();

export interface StandinFile {
  from: string;
  sha256: string;
  /** the copy in the run directory */
  runPath: string;
}

export interface StandinGuest {
  /** the JSON file the variable named */
  spec: string;
  kernel: StandinFile;
  ramdisk: StandinFile;
  cmdline: string;
  /** the xl.cfg gives it fbxen's vif (and netfront weighs the run's vif), as for FreeBSD */
  vif: boolean;
}

/** Whether the environment asks for the stand-in (the variable set and not empty): boot and migrate-test ask alike. */
export function standinRequested(env: NodeJS.ProcessEnv): boolean {
  const value = env[STANDIN_ENV];
  return value !== undefined && value !== '';
}

const refuse = (why: string, hint: string) => new UsageError(`${STANDIN_ENV} is set, but ${why}`, { hint: `${hint}; it is a test-only variable of fbxen's own lab tests (docs/lab.md): unset it for a real boot` });

/**
 * The stand-in named by the environment, checked against the request; undefined when the variable is
 * unset or empty. Nothing is written.
 */
export async function readStandinGuest(
  env: NodeJS.ProcessEnv,
  req: { type?: 'hvm' | 'pvh' | undefined; toolstack: string; kernel?: string | undefined; kernelEnv?: readonly string[] | undefined },
  runDir: string,
  cwd: string,
): Promise<StandinGuest | undefined> {
  if (!standinRequested(env)) return undefined;
  const value = env[STANDIN_ENV]!;
  if (req.toolstack !== 'xl') throw refuse(`--toolstack ${req.toolstack} cannot boot it`, 'use --toolstack xl');
  if (req.type !== 'pvh') throw refuse('the boot is not --type pvh (the stand-in is a PVH kernel)', 'add --type pvh');
  if (req.kernel !== undefined) throw refuse('--kernel names another kernel', 'drop --kernel');
  if ((req.kernelEnv ?? []).length > 0) throw refuse('--kernel-env has no meaning for it (its cmdline is in the file)', 'drop --kernel-env');
  const spec = resolve(cwd, value);
  const parsed = SpecSchema.safeParse(await readJson(spec));
  if (!parsed.success) {
    throw new InputError(`${STANDIN_ENV}: ${spec} is not a stand-in description: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(file)'}: ${i.message}`).join('; ')}`, { hint: 'write {"kernel": PATH, "ramdisk": PATH, "cmdline": STRING} (paths relative to the file), or unset the test-only variable' });
  }
  const file = async (p: string, runName: string): Promise<StandinFile> => {
    const from = resolve(dirname(spec), p);
    const st = await stat(from).catch(() => undefined);
    if (!st?.isFile()) throw new InputError(`${STANDIN_ENV}: ${from} (named in ${spec}) is not a file`, { hint: 'build the stand-in first (test/lab/standin-guest.ts), or unset the test-only variable' });
    if (st.size > MAX_FILE_BYTES) throw new InputError(`${STANDIN_ENV}: ${from} is ${st.size} bytes, more than ${MAX_FILE_BYTES}`, { hint: 'a stand-in kernel or ramdisk is a few MiB' });
    return { from, sha256: await sha256File(from), runPath: join(runDir, runName) };
  };
  return { spec, kernel: await file(parsed.data.kernel, STANDIN_KERNEL_FILE), ramdisk: await file(parsed.data.ramdisk, STANDIN_RAMDISK_FILE), cmdline: parsed.data.cmdline, vif: parsed.data.vif ?? false };
}

/** The JSON file, read up to its bound (a bigger one is refused, not cut). */
async function readJson(path: string): Promise<unknown> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(MAX_SPEC_BYTES + 1);
      const { bytesRead } = await fh.read(buf, 0, buf.length, 0);
      if (bytesRead > MAX_SPEC_BYTES) throw new InputError(`${STANDIN_ENV}: ${path} is larger than ${MAX_SPEC_BYTES} bytes`, { hint: 'the description is three short fields' });
      text = buf.subarray(0, bytesRead).toString('utf8');
    } finally {
      await fh.close();
    }
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`${STANDIN_ENV}: cannot read ${path}: ${(err as Error).message}`, { hint: 'name an existing JSON file, or unset the test-only variable' });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new InputError(`${STANDIN_ENV}: ${path} is not JSON: ${(err as Error).message}`, { hint: 'write {"kernel": PATH, "ramdisk": PATH, "cmdline": STRING}' });
  }
}

/** Copies kernel and ramdisk into the run (read-only), each checked against the sha256 read before. */
export async function copyStandinIntoRun(s: StandinGuest): Promise<void> {
  for (const f of [s.kernel, s.ramdisk]) {
    const tmp = `${f.runPath}.tmp${process.pid}`;
    try {
      await copyFile(f.from, tmp);
      if ((await sha256File(tmp)) !== f.sha256) throw new InputError(`${STANDIN_ENV}: ${f.from} changed while fbxen copied it`, { hint: 'boot again once it is no longer being written' });
      await chmod(tmp, 0o444);
      await rename(tmp, f.runPath);
    } catch (err) {
      await rm(tmp, { force: true });
      throw err;
    }
  }
}

/** What --dry-run says about it, before the steps. */
export function standinPlanLines(s: StandinGuest): string[] {
  return [
    `STAND-IN   ${STANDIN_LABEL} (${STANDIN_ENV}=${s.spec}): NOT FreeBSD; the image's kernel is not booted or checked`,
    `kernel     ${s.kernel.from} (sha256 ${s.kernel.sha256}); copied to ${s.kernel.runPath}`,
    `ramdisk    ${s.ramdisk.from} (sha256 ${s.ramdisk.sha256}); copied to ${s.ramdisk.runPath}`,
    `cmdline    ${s.cmdline}`,
    `vif        ${s.vif ? "fbxen's vif on the bridge, as for FreeBSD (the stand-in answers the round trip through it)" : 'none (the replayed bundle has no xn0 to answer for one)'}`,
  ];
}

/** What run.json keeps about it. */
export function standinRunRecord(s: StandinGuest): Record<string, unknown> {
  return { label: STANDIN_LABEL, spec: s.spec, kernel: { from: s.kernel.from, sha256: s.kernel.sha256, path: s.kernel.runPath }, ramdisk: { from: s.ramdisk.from, sha256: s.ramdisk.sha256, path: s.ramdisk.runPath }, cmdline: s.cmdline, vif: s.vif };
}
