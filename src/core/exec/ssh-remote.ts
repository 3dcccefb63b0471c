/**
 * The command lines fbxen sends to a remote host, as strings for the remote user's login shell (sshd
 * runs `$SHELL -c STRING`). Every argument is quoted here once for a POSIX shell (sh, dash, bash, ash:
 * what a Linux dom0 gives root) and never again: the scripts below take their data as "$@", so no
 * argument is parsed a second time.
 */
import { InputError } from '../errors.js';
import { shellQuote } from './runner.js';

/** One argument for the remote POSIX shell: safe words as they are, anything else in single quotes. */
export function remoteQuote(arg: string): string {
  // argv entries are C strings: a NUL could not reach the remote command, it would cut the argument.
  if (arg.includes('\0')) throw new InputError(`an argument for the remote host holds a NUL byte: ${JSON.stringify(arg.slice(0, 60))}`, { hint: 'this is a bug in the caller: arguments are C strings' });
  return shellQuote(arg);
}

export function remoteCommand(argv: readonly string[]): string {
  return argv.map(remoteQuote).join(' ');
}

/**
 * How a remote command learns that fbxen is gone. sshd signals nothing to a session without a tty when
 * its client disappears; what the command does see is end-of-file on its stdin (the channel's input:
 * ssh sends EOF when its own stdin closes, and the master closes the channel's input when a mux client
 * dies). So:
 * - a command that reads its stdin (xl console on a terminal, a copy) gets fbxen's stdin and ends on that
 *   EOF itself (a bare `xl create -c` does not: its xenconsole reads no stdin without a terminal, so fbxen's
 *   detach reaps it; after a SIGKILL of fbxen it ends with the domain);
 * - any other command runs under this wrapper: the command gets /dev/null, a background reader waits
 *   for EOF on the channel's input (which fbxen holds open and never writes) and then sends the
 *   command SIGTERM; when the command ends first, the reader is ended. The exit status is the command's.
 * fd 3 carries stdin past the shell's rule that a background list reads /dev/null (POSIX, 2.9.3.1).
 */
export const LIFELINE_SCRIPT =
  'exec 3<&0; "$@" </dev/null 3<&- & c=$!; ' +
  '{ while read -r _; do :; done; kill -TERM "$c" 2>/dev/null; } <&3 >/dev/null 2>&1 & w=$!; ' +
  'exec 3<&-; wait "$c"; s=$?; kill "$w" 2>/dev/null; exit "$s"';

export function lifelineCommand(argv: readonly string[]): string {
  return remoteCommand(['exec', 'sh', '-c', LIFELINE_SCRIPT, 'fbxen', ...argv]);
}

export function directCommand(argv: readonly string[]): string {
  return remoteCommand(['exec', ...argv]);
}

/**
 * The receiving end of put(): a tar stream on stdin (GNU tar's sparse pax entries, which GNU tar and
 * bsdtar extract with their holes) into a private temporary directory beside the target, then one
 * rename, so the target name never holds half a file. The temporary directory goes on every exit.
 * $1 = directory, $2 = file name.
 */
export const RECEIVE_SCRIPT =
  'set -eu; d=$1; n=$2; t="$d/.fbxen-put-$$"; ' +
  // No single quotes in the script: it is itself sent single-quoted, and the plan stays readable.
  'clean() { rm -rf -- "$t"; }; trap clean EXIT; trap "exit 129" HUP; trap "exit 130" INT; trap "exit 143" TERM; ' +
  'mkdir -m 0700 -- "$t"; tar -x -f - -C "$t"; ' +
  '[ -f "$t/$n" ] || { echo "fbxen: the copy of $n did not arrive whole" >&2; exit 1; }; ' +
  'mv -f -- "$t/$n" "$d/$n"';

/** Creates $1 (the runs directory) if needed and $1/$2 (this run's, mode 0700), which must be new. */
export const MKDIR_RUN_SCRIPT = 'set -eu; mkdir -p -- "$1"; mkdir -m 0700 -- "$1/$2"; printf "%s\\n" "$1/$2"';

/** Removes $1/$2 (a run directory) and everything in it; an absent one is not an error. */
export const REMOVE_RUN_SCRIPT = 'set -eu; rm -rf -- "$1/$2"';

export function scriptCommand(script: string, args: readonly string[]): string {
  return remoteCommand(['exec', 'sh', '-c', script, 'fbxen', ...args]);
}
