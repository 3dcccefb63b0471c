/**
 * The sending side of SshSession.put(): GNU tar's sparse archive of one file, piped into the ssh whose
 * remote side unpacks it (RECEIVE_SCRIPT in ssh-remote.ts), counting the bytes handed to ssh.
 */
import { statSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import { PassThrough, type Writable } from 'node:stream';
import { InputError } from '../errors.js';
import type { StreamingProcess } from './runner.js';

/**
 * --sparse: holes found with SEEK_DATA/SEEK_HOLE (zeros read only where the file system cannot say);
 * pax format keeps sizes past 8 GiB and the GNU.sparse map. Owners as numbers: the host's names differ.
 */
export function tarArgs(localFile: string): string[] {
  return ['--create', '--file=-', '--sparse', '--format=posix', '--numeric-owner', '--directory', dirname(localFile), '--', basename(localFile)];
}

export function localFileSize(localFile: string, where: string): number {
  try {
    const st = statSync(localFile);
    if (!st.isFile()) throw new Error('not a regular file');
    return st.size;
  } catch (err) {
    throw new InputError(`cannot copy ${localFile} to ${where}: ${(err as Error).message}`, { hint: 'give an existing regular file', cause: err });
  }
}

/** Pipes tar's stdout into ssh's stdin; resolves with the byte count when both exit 0. */
export async function pipeCounted(tar: StreamingProcess, ssh: StreamingProcess): Promise<number> {
  let bytes = 0;
  const counter = new PassThrough();
  counter.on('data', (chunk: Buffer) => (bytes += chunk.length));
  const sink = ssh.stdin as Writable;
  sink.on('error', () => undefined);
  tar.stdout.pipe(counter).pipe(sink);
  // A failure of either side ends the other: a dead ssh must not leave tar blocked, nor the reverse.
  const settled = await Promise.allSettled([
    tar.done.catch((err: unknown) => {
      ssh.kill();
      throw err;
    }),
    ssh.done.catch((err: unknown) => {
      tar.kill();
      throw err;
    }),
  ]);
  const failed = settled.find((s): s is PromiseRejectedResult => s.status === 'rejected');
  if (failed) throw failed.reason;
  return bytes;
}
