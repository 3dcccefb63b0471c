/**
 * How to reach the lab's dom0: the ssh target `--host lab` resolves to (user root on 127.0.0.1, the
 * forwarded port, the lab's key, its known_hosts with the pinned host key), and ssh's arguments for it.
 */
import { readFile } from 'node:fs/promises';
import { EnvironmentError } from '../errors.js';
import type { SshOptions } from '../exec/ssh.js';
import { knownHostsName, type SshTarget } from '../exec/ssh-target.js';
import { defaultLabDir, labPaths } from './paths.js';
import { readLabState, type LabStateT } from './state.js';

export interface LabSshTarget {
  user: 'root';
  host: '127.0.0.1';
  port: number;
  identityFile: string;
  knownHostsFile: string;
  /** Always true: the host key was pinned at image build, so the first connection is already strict. */
  strictHostKeyChecking: true;
}

/**
 * The lab target in the ssh transport's terms (core/exec/ssh.ts): where SshSession connects and the
 * key and known_hosts it must use. knownHostsName of the target is the name lab up pinned.
 */
export function sessionTarget(t: LabSshTarget): { target: SshTarget; options: Required<Pick<SshOptions, 'knownHosts' | 'identity'>> } {
  return { target: { kind: 'ssh', user: t.user, host: t.host, port: t.port }, options: { knownHosts: t.knownHostsFile, identity: t.identityFile } };
}

export function targetOf(state: LabStateT): LabSshTarget {
  return { user: 'root', host: '127.0.0.1', port: state.port, identityFile: state.identityFile, knownHostsFile: state.knownHostsFile, strictHostKeyChecking: true };
}

/**
 * ssh's arguments for the target, before the remote command. -F none: a user's ssh config (a ProxyJump
 * for *, another IdentityFile) must not change where the lab's connection goes.
 */
export function sshArgs(t: LabSshTarget, options: { batch?: boolean; connectTimeoutSec?: number } = {}): string[] {
  return [
    '-F', 'none',
    '-i', t.identityFile,
    '-o', 'IdentitiesOnly=yes',
    '-o', `UserKnownHostsFile=${t.knownHostsFile}`,
    '-o', 'GlobalKnownHostsFile=/dev/null',
    '-o', 'StrictHostKeyChecking=yes',
    '-o', 'LogLevel=ERROR',
    '-o', `ConnectTimeout=${options.connectTimeoutSec ?? 10}`,
    ...(options.batch === false ? [] : ['-o', 'BatchMode=yes']),
    '-p', String(t.port),
    `${t.user}@${t.host}`,
  ];
}

/** The known_hosts line that pins the dom0's host key for the port ssh connects to. */
export function knownHostsLine(port: number, hostKeyPub: string): string {
  const [type, key] = hostKeyPub.trim().split(/\s+/);
  if (!type || !key || !/^ssh-ed25519$/.test(type) || !/^[A-Za-z0-9+/=]{20,200}$/.test(key)) {
    throw new EnvironmentError('the lab image has no valid ssh host key (ssh_host_ed25519_key.pub)', { hint: 'rebuild the image: fbxen lab down --purge, then fbxen lab up' });
  }
  return `${knownHostsName({ kind: 'ssh', user: 'root', host: '127.0.0.1', port })} ${type} ${key}\n`;
}

/** Whether the lab's QEMU still runs: the pid is alive, not a zombie, and its command line is this lab's. */
export async function isLabProcess(state: Pick<LabStateT, 'pid' | 'serialLog'>): Promise<boolean> {
  let cmdline: string;
  let stat: string;
  try {
    cmdline = await readFile(`/proc/${state.pid}/cmdline`, 'latin1');
    stat = await readFile(`/proc/${state.pid}/stat`, 'latin1');
  } catch {
    return false;
  }
  // stat: "PID (comm) S ...": the state letter after the last ')'.
  if (/\)\s+Z\s/.test(stat.slice(stat.lastIndexOf(')')))) return false;
  return cmdline.split('\0').includes(`file:${state.serialLog}`);
}

/**
 * `--host lab`: the running lab's ssh target, from its state file. Errors say how to get a lab.
 */
export async function resolveLabTarget(options: { dir?: string | undefined; env?: NodeJS.ProcessEnv } = {}): Promise<LabSshTarget> {
  const paths = labPaths(options.dir ?? defaultLabDir(options.env));
  const state = await readLabState(paths.state);
  if (!state) throw new EnvironmentError(`no lab runs in ${paths.dir}`, { hint: 'start one with `fbxen lab up`' });
  if (!(await isLabProcess(state))) throw new EnvironmentError(`the lab in ${paths.dir} is not running (its QEMU, pid ${state.pid}, is gone)`, { hint: 'start it again with `fbxen lab up`' });
  if (!state.readyAt) throw new EnvironmentError(`the lab in ${paths.dir} is still coming up (xl info has not answered yet)`, { hint: 'wait for `fbxen lab up` to finish' });
  return targetOf(state);
}
