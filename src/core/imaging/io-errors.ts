import { EnvironmentError } from '../errors.js';

/** A full or read-only output file system, as the user can act on it: which --out, and what to do. */
export function translateIoError(err: unknown, outDir: string): unknown {
  const code = (err as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') {
    return new EnvironmentError(`no space left on the device holding ${outDir}`, { hint: 'free some space or choose --out on a larger file system (nothing half-written was left)', cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new EnvironmentError(`cannot write in ${outDir}: ${code}`, { hint: 'choose a writable --out', cause: err });
  }
  return err;
}
