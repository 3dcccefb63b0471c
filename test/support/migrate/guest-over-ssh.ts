/**
 * The guest of migrate-test's network tests over the fake ssh (test/support/migrate/fake-ssh, a
 * SIMULATION: the real collector and heartbeat run here under dash against the FreeBSD stand-ins and the
 * STUB nc): its CD is the one `fbxen boot` made (bsdtar off the run's ISO), its bundle the netfront
 * fixture with the vif's MAC in place of the recorded xn0's. Puts its `ssh` (and `sysctl`) first on h's PATH.
 *
 * The guest's /tmp is this host's: the heartbeat's stop file (/tmp/fbxen-heartbeat-<run>.stop) is shared by
 * every test running now, so each guest gets its own migrate-test --run-id (returned), and its stop files
 * are removed when the test ends (a stop that came after the heartbeat had ended is left behind).
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { onTestFinished } from 'vitest';
import { macForName } from '../../../src/core/toolstack/xl/xl-config.js';
import { netfrontBundleWithMac } from '../netfront-fixture.js';
import { REPO, type Host } from '../../boot/harness.js';

export { NETFRONT_FIXTURE } from '../netfront-fixture.js';

export interface GuestOverSshOptions {
  /** environment for the STUB nc (FBXEN_STUB_NC_CORRUPT_UP, ...) */
  ncEnv?: Record<string, string>;
  /** the real ssh client for every destination but root@guest (the dom0's master and forwards); else all go to the guest */
  realSsh?: string;
}

/** Returns the --run-id for migrate-test against this guest. */
export function guestOverSsh(h: Host, name: string, bootDir: string, opts: GuestOverSshOptions = {}): { runId: string } {
  const g = join(h.dir, 'guest');
  mkdirSync(join(g, 'cd'), { recursive: true });
  execFileSync('bsdtar', ['-xf', join(bootDir, 'fbxen-cd.iso'), '-C', join(g, 'cd'), 'fbxen']);
  netfrontBundleWithMac(join(g, 'bundle'), macForName(name));
  const bin = join(g, 'bin');
  mkdirSync(bin);
  // the heartbeat's timecounter OIDs from the migrate stand-in, everything else from the bundle's
  writeFileSync(join(bin, 'sysctl'), `#!/bin/sh\ncase "$1 $2" in "-n kern.timecounter"*) exec ${join(REPO, 'test/support/migrate/standins/sysctl')} "$@" ;; esac\nexec ${join(REPO, 'test/support/verify/standins/sysctl')} "$@"\n`);
  const exports = Object.entries({ FBXEN_STANDIN_BUNDLE: join(g, 'bundle'), FBXEN_STANDIN_STATE: g, FBXEN_STANDIN_CD: join(g, 'cd'), HOME: g, ...opts.ncEnv }).map(([k, v]) => `${k}='${v}'; export ${k}`);
  const others = opts.realSsh ? `case " $* " in *" root@guest "*) ;; *) exec ${opts.realSsh} "$@" ;; esac\n` : '';
  writeFileSync(join(bin, 'ssh'), `#!/bin/sh\n${others}${exports.join('\n')}\nPATH='${bin}:${join(REPO, 'test/support/verify/standins')}:${join(REPO, 'test/probes/stubs')}':"$PATH"; export PATH\nexec ${join(REPO, 'test/support/migrate/fake-ssh/ssh')} "$@"\n`);
  chmodSync(join(bin, 'sysctl'), 0o755);
  chmodSync(join(bin, 'ssh'), 0o755);
  h.env.PATH = `${bin}:${h.env.PATH}`;
  const runId = `mig-${randomBytes(4).toString('hex')}`;
  onTestFinished(() => {
    for (const f of readdirSync('/tmp')) if (f.startsWith(`fbxen-heartbeat-${runId}-`)) rmSync(join('/tmp', f), { force: true });
  });
  return { runId };
}
