/**
 * A real OpenSSH server for the ssh transport's tests: `/usr/sbin/sshd -D -e -f CONFIG` on 127.0.0.1 at a
 * free port, with its own config, host key, authorized key and pid file made in the run's TMPDIR. It
 * never touches the machine's sshd (own port, no systemd, no /etc/ssh files read but the binary's
 * defaults) and is stopped, with every session process it started, by stop().
 *
 * Sessions get PATH (and any `env`) from sshd_config's SetEnv, so a fake xl can come first on the
 * remote PATH. The server accepts LANG and LC_* (AcceptEnv) so that a test can show fbxen sends none.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SSHD = '/usr/sbin/sshd';
export const SFTP_SERVER = ['/usr/lib/openssh/sftp-server', '/usr/libexec/sftp-server'].find((p) => existsSync(p));

/** Why the sshd tests cannot run here, or undefined when they can. */
export function sshdMissing(): string | undefined {
  if (!existsSync(SSHD)) return `${SSHD} is not installed (scripts/setup.sh installs openssh-server)`;
  if (spawnSync('ssh', ['-V']).error) return 'the OpenSSH client (ssh) is not installed';
  if (process.getuid?.() !== 0) return 'sshd needs root here (it switches to the session user and uses /run/sshd)';
  return undefined;
}

export interface TestSshd {
  host: '127.0.0.1';
  port: number;
  /** ssh://root@127.0.0.1:PORT */
  url: string;
  dir: string;
  /** A private key whose public half is authorized for root. */
  identity: string;
  /** A known_hosts file that pins this server's host key (and nothing else). */
  knownHosts: string;
  /** The server's log so far (sshd -e writes it to stderr). */
  log(): string;
  /** Ends every connection's processes (as a host that goes away), keeping the listener. */
  dropConnections(): void;
  stop(): Promise<void>;
}

export function makeKey(dir: string, name: string): string {
  const path = join(dir, name);
  const r = spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `fbxen-test-${name}`, '-f', path], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`ssh-keygen failed: ${r.stderr}`);
  return path;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** Processes whose parent is `pid` (sshd's per-connection children), read from /proc. */
function childrenOf(pid: number): number[] {
  const out: number[] = [];
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'utf8');
      // The command name may hold spaces and parentheses: fields start after the last ')'.
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      if (ppid === pid) out.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

function descendants(pid: number): number[] {
  const kids = childrenOf(pid);
  return kids.flatMap((k) => [k, ...descendants(k)]);
}

/** `config`: more sshd_config lines (e.g. `GatewayPorts clientspecified`, only where a test needs it). */
export async function startSshd(options: { path?: readonly string[]; env?: Record<string, string>; config?: readonly string[] } = {}): Promise<TestSshd> {
  const dir = mkdtempSync(join(tmpdir(), 'sshd-'));
  const hostKey = makeKey(dir, 'host_ed25519');
  const identity = makeKey(dir, 'client_ed25519');
  writeFileSync(join(dir, 'authorized_keys'), readFileSync(`${identity}.pub`));
  // sshd's privilege separation directory; Debian's service unit would create it.
  mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const path = [...(options.path ?? []), '/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'].join(':');
  const setEnv = Object.entries({ PATH: path, ...options.env }).map(([k, v]) => `${k}=${JSON.stringify(v)}`);

  for (let attempt = 1; ; attempt++) {
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    writeFileSync(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        // The key files live under the world-writable /tmp: StrictModes would refuse them.
        'StrictModes no',
        'PrintMotd no',
        'PrintLastLog no',
        'AcceptEnv LANG LC_*',
        `SetEnv ${setEnv.join(' ')}`,
        'LogLevel VERBOSE',
        ...(SFTP_SERVER ? [`Subsystem sftp ${SFTP_SERVER}`] : []),
        ...(options.config ?? []),
        '',
      ].join('\n'),
    );
    const child: ChildProcess = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    const ready = await new Promise<boolean>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`sshd did not start within 30 s:\n${log}`)), 30_000);
      child.stderr!.on('data', (d: Buffer) => {
        log += d.toString();
        if (log.includes(`Server listening on 127.0.0.1 port ${port}`)) {
          clearTimeout(timer);
          resolve(true);
        }
      });
      child.once('exit', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
    if (!ready) {
      // Another process took the port between freePort() and sshd's bind: try another.
      if (attempt < 5 && /Address already in use/.test(log)) continue;
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`sshd did not start:\n${log}`);
    }
    const pubKey = readFileSync(`${hostKey}.pub`, 'utf8').trim().split(' ').slice(0, 2).join(' ');
    const knownHosts = join(dir, 'known_hosts');
    writeFileSync(knownHosts, `[127.0.0.1]:${port} ${pubKey}\n`);
    const pid = child.pid!;
    // A worker that dies without afterAll must not leave the server running.
    const onExit = () => child.kill('SIGTERM');
    process.once('exit', onExit);
    return {
      host: '127.0.0.1',
      port,
      url: `ssh://root@127.0.0.1:${port}`,
      dir,
      identity,
      knownHosts,
      log: () => log,
      dropConnections() {
        for (const p of childrenOf(pid)) {
          try {
            process.kill(p, 'SIGKILL');
          } catch {
            // already gone
          }
        }
      },
      async stop() {
        // Session processes outlive the listener: end them first (all are this server's descendants).
        for (const p of descendants(pid).reverse()) {
          try {
            process.kill(p, 'SIGTERM');
          } catch {
            // already gone
          }
        }
        process.off('exit', onExit);
        if (child.exitCode === null && child.signalCode === null) {
          const exited = new Promise((r) => child.once('exit', r));
          child.kill('SIGTERM');
          await exited;
        }
        rmSync(dir, { recursive: true, force: true });
      },
    };
  }
}
