/**
 * Opening an ssh session (ssh.ts): the private directory of the control socket, waiting for the
 * master's marker, and turning what ssh says when it cannot connect into an error that names the fix.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EnvironmentError, TimeoutError } from '../errors.js';
import { CommandFailedError, type StreamingProcess } from './runner.js';
import { formatHostUrl, knownHostsName, type SshTarget } from './ssh-target.js';

/** At most this much of what a login script prints before the marker is kept while looking for it. */
const READY_BOUND = 64 * 1024;

/**
 * A private (0700, mkdtemp) directory for the control socket. A socket path holds at most 108 bytes
 * and ssh adds a 17-byte suffix while binding; ssh also expands % and ~ in ControlPath and splits at
 * spaces: a TMPDIR that is long or holds such characters falls back to /tmp.
 */
export function makeControlDir(): string {
  const base = tmpdir();
  return mkdtempSync(join(base.length + 32 <= 90 && !/[\s%"'\\~]/.test(base) ? base : '/tmp', 'fbxen-ssh-'));
}

/** Resolves when `marker` arrives on stdout; rejects when the process ends first or the time is up. */
export function waitForMarker(proc: StreamingProcess, marker: string, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let seen = '';
    const timer = setTimeout(() => finish(new TimeoutError(`no ${marker} within ${timeoutMs} ms`)), timeoutMs);
    const onData = (chunk: Buffer) => {
      // Only a bounded tail is kept: a login script that prints without end cannot grow it.
      seen = (seen + chunk.toString('latin1')).slice(-(marker.length + READY_BOUND));
      if (seen.includes(marker)) finish();
    };
    function finish(err?: unknown) {
      clearTimeout(timer);
      proc.stdout.off('data', onData);
      if (err) reject(err);
      else resolve();
    }
    proc.stdout.on('data', onData);
    proc.done.then(
      (r) => finish(new CommandFailedError({ ...r, exitCode: r.exitCode }, 'the ssh master ended before logging in')),
      (err: unknown) => finish(err),
    );
  });
}


export function openError(target: SshTarget, options: { knownHosts?: string | undefined; identity?: string | undefined }, stderr: string, cause: unknown): EnvironmentError {
  const { host, port } = target;
  const kh = options.knownHosts ?? '~/.ssh/known_hosts';
  const name = knownHostsName(target);
  const detail = stderr.trim().split('\n').filter((l) => l && !/^@+$|^@\s/.test(l)).slice(-3).join('; ');
  const say = (what: string, hint: string) => new EnvironmentError(`ssh to ${formatHostUrl(target)}: ${what}${detail ? ` (ssh: ${detail})` : ''}`, { hint, cause });
  const pin = `pin it once: ssh-keyscan -p ${port} ${host} >> ${kh}, check its fingerprint (ssh-keygen -lf ${kh}) against the host's own (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub, run on ${host}'s console), then run again${options.knownHosts ? '' : ' (or keep the keys in a file of their own and pass --known-hosts FILE)'}`;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/.test(stderr)) {
    return say(`the host key differs from the one pinned in ${kh}`, `if ${host} was reinstalled, drop the old key with ssh-keygen -R '${name}' -f ${kh} and ${pin}; if not, someone may be in the middle of the connection: do not go on`);
  }
  if (/No \S+ host key is known for|Host key verification failed/.test(stderr)) {
    return say(`its host key is not in ${kh} (strict host key checking)`, pin);
  }
  if (/Permission denied \(|Too many authentication failures/.test(stderr)) {
    return say(`${target.user} was refused${options.identity ? ` with the key ${options.identity}` : ''}`, `pass --identity FILE, a private key whose FILE.pub is in ~${target.user}/.ssh/authorized_keys on ${host} (for root, sshd_config needs PermitRootLogin prohibit-password); BatchMode is on, so no password or passphrase is asked: load a key with a passphrase into ssh-agent`);
  }
  if (/Connection refused/.test(stderr)) return say(`connection refused on port ${port}`, `start sshd on ${host}, or give its port: ssh://${target.user}@${host}:PORT`);
  if (/timed out|Connection timed out|Operation timed out/.test(stderr)) return say(`no answer on port ${port}`, `check the address, the route and firewalls between here and ${host}`);
  if (/Could not resolve hostname|Name or service not known/.test(stderr)) return say(`${host} does not resolve`, 'check the name, or give an address');
  return say('the connection failed', 'run ssh -v with the same options to see why');
}
