/**
 * `--host` (and fbxen.yaml's `host:`): where xl runs. Absent or `localhost` is this machine; anything
 * else must be `ssh://USER@HOST[:PORT]`. The parts are checked character by character, so none can
 * carry a shell word or an ssh option (`-oProxyCommand=...`) into the ssh command line.
 */
import { isIPv6 } from 'node:net';
import { InputError } from '../errors.js';

export interface SshTarget {
  kind: 'ssh';
  user: string;
  /** A DNS name, an IPv4 address, or an IPv6 address (without its URL brackets). */
  host: string;
  port: number;
}

export type HostTarget = { kind: 'local' } | SshTarget;

export const DEFAULT_SSH_USER = 'root';
export const DEFAULT_SSH_PORT = 22;

/** POSIX-portable user names (useradd's default rule, upper case allowed): never starts with '-'. */
const USER = /^[A-Za-z_][A-Za-z0-9_.-]{0,31}$/;
/** RFC 1123 host names (and so dotted IPv4), labels of 1-63, at most 253 in all, an optional final dot. */
const LABEL = '[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?';
const HOSTNAME = new RegExp(`^${LABEL}(?:\\.${LABEL})*\\.?$`);
const URL_SHAPE = /^ssh:\/\/(?:([^@/?#]*)@)?(\[[^\]/?#@]*\]|[^:/?#@[\]]*)(?::([^/?#@]*))?\/?$/;

const FORM = 'ssh://USER@HOST[:PORT]';
const HINT = 'give ssh://root@dom0.example.org, ssh://root@192.0.2.10:2222 or ssh://root@[2001:db8::10] (an IPv6 address in brackets), or localhost (the default) for this machine';

function refuse(value: string, why: string): never {
  return fail(`--host ${JSON.stringify(value)} is not ${FORM}: ${why}`);
}
function fail(message: string): never {
  throw new InputError(message, { hint: HINT });
}

export function parseHostUrl(value: string | undefined): HostTarget {
  if (value === undefined || value === '' || value === 'localhost') return { kind: 'local' };
  const m = URL_SHAPE.exec(value);
  if (!m) return refuse(value, 'it must start with ssh:// and hold only a user, a host and a port');
  const [, user = DEFAULT_SSH_USER, rawHost = '', rawPort] = m;
  if (!USER.test(user)) return refuse(value, `the user ${JSON.stringify(user)} must be 1-32 of A-Z a-z 0-9 _ . - starting with a letter or _`);
  let host: string;
  if (rawHost.startsWith('[')) {
    host = rawHost.slice(1, -1);
    // Zone ids (fe80::1%eth0) are refused: '%' would need URL-decoding and means nothing to another host.
    if (!isIPv6(host) || host.includes('%')) return refuse(value, `${rawHost} is not an IPv6 address`);
  } else {
    host = rawHost;
    if (host.length === 0 || host.length > 253 || !HOSTNAME.test(host)) return refuse(value, `the host ${JSON.stringify(host)} must be a DNS name or an address (A-Z a-z 0-9 . -, no label starting or ending with -)`);
  }
  let port = DEFAULT_SSH_PORT;
  if (rawPort !== undefined) {
    if (!/^[1-9][0-9]{0,4}$/.test(rawPort) || Number(rawPort) > 65535) return refuse(value, `the port ${JSON.stringify(rawPort)} must be 1-65535`);
    port = Number(rawPort);
  }
  return { kind: 'ssh', user, host: host.toLowerCase(), port };
}

/** The canonical URL of a target (port 22 left out): parseHostUrl(formatHostUrl(t)) equals t. */
export function formatHostUrl(target: HostTarget): string {
  if (target.kind === 'local') return 'localhost';
  const host = target.host.includes(':') ? `[${target.host}]` : target.host;
  return `ssh://${target.user}@${host}${target.port === DEFAULT_SSH_PORT ? '' : `:${target.port}`}`;
}

/** The name ssh looks the host key up under in known_hosts (`[host]:port` off port 22). */
export function knownHostsName(target: SshTarget): string {
  return target.port === DEFAULT_SSH_PORT ? target.host : `[${target.host}]:${target.port}`;
}
