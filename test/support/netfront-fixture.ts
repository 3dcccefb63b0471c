/**
 * The recorded netfront bundle the guests of the network tests replay (13.2-netfront-healthy, DERIVED), and
 * a copy of it with its xn0 given another MAC (fbxen's vif's, from the domain's name), as FreeBSD would
 * print the MAC xl gave it: the fake ssh's guest and the lab's stand-in (test V) replay that copy.
 */
import { cpSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO } from '../boot/harness.js';

export const NETFRONT_FIXTURE = join(REPO, 'fixtures/probes/13.2-netfront-healthy-derived');
/** the MAC of xn0 in the recording */
export const NETFRONT_FIXTURE_MAC = '00:16:3e:5a:01:02';

/** Copies the fixture to `to`, every file with the recorded MAC replaced by `mac`; returns `to`. */
export function netfrontBundleWithMac(to: string, mac: string): string {
  cpSync(NETFRONT_FIXTURE, to, { recursive: true });
  const walk = (d: string) => {
    for (const n of readdirSync(d)) {
      const p = join(d, n);
      if (statSync(p).isDirectory()) walk(p);
      else writeFileSync(p, readFileSync(p, 'latin1').replaceAll(NETFRONT_FIXTURE_MAC, mac), 'latin1');
    }
  };
  walk(to);
  return to;
}
