/**
 * Outputs are written under a temporary name beside the target and renamed into place only when
 * complete, so an interrupted or failed run never leaves a file that looks finished.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** fsync on a fresh descriptor: the file's data reaches the disk before it is renamed into place. */
export async function syncFile(path: string): Promise<void> {
  const f = await open(path, 'r');
  try {
    await f.sync();
  } finally {
    await f.close();
  }
}

export function temporarySibling(target: string): string {
  return join(dirname(target), `.${basename(target)}.partial-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** Runs `produce` on a temporary path, then renames it onto `target`; removes the temporary on failure. */
export async function withAtomicOutput<T>(target: string, produce: (tmpPath: string) => Promise<T>): Promise<T> {
  await mkdir(dirname(target), { recursive: true });
  const tmp = temporarySibling(target);
  try {
    const result = await produce(tmp);
    await rename(tmp, target);
    return result;
  } catch (err) {
    await rm(tmp, { force: true, recursive: true });
    throw err;
  }
}

export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await withAtomicOutput(target, (tmp) => writeFile(tmp, data));
}

/** What temporarySibling names look like: `.NAME.partial-PID-RANDOM`. */
const PARTIAL = /^\..+\.partial-(\d+)-[0-9a-f]{8}$/;

/**
 * Whether process `pid` is alive on this host. EPERM means it exists (another user's); only ESRCH
 * proves it is gone. A pid that was reused by an unrelated process counts as alive: keeping a stale
 * file is the safe mistake, deleting a live build's output is not.
 */
export function processAlive(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0) return false;
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

/**
 * Removes the temporary outputs (temporarySibling names, and `extra` patterns whose first group is the
 * pid) that processes which no longer exist left in `dir`: a build killed by SIGKILL or a power cut
 * cannot clean up after itself, and its partial image can take gigabytes. Files of live processes are
 * never touched. Returns what was removed, with sizes, for the caller to report.
 */
export async function removeStalePartials(dir: string, extra: readonly RegExp[] = []): Promise<{ path: string; bytes: number }[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const removed: { path: string; bytes: number }[] = [];
  for (const name of names) {
    const m = [PARTIAL, ...extra].map((re) => re.exec(name)).find((x) => x);
    if (!m || processAlive(Number(m[1]))) continue;
    const path = join(dir, name);
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    // Allocated bytes, not the apparent size: a partial image is sparse.
    const bytes = st.isDirectory() ? 0 : st.blocks * 512;
    // One that cannot be removed (another owner, a read-only mount) is left as it was: not this build's to fail on.
    const gone = await rm(path, { recursive: true, force: true }).then(
      () => true,
      () => false,
    );
    if (gone) removed.push({ path, bytes });
  }
  return removed;
}
