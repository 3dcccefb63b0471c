/**
 * The stand-in guest's nc and route (test/lab/standin-guest/nc, route; TEST DOUBLES of FreeBSD's, used by
 * real-xl test V when the stand-in has fbxen's vif) against fbxen's REAL round-trip listener
 * (src/core/net/roundtrip.ts) over loopback, with the host's busybox: Debian 12's, the build the lab's dom0
 * gives the stand-in. The flags are the ones guest/fbxen-collect passes.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startRoundTripListener, type RoundTripListener } from '../../src/core/net/roundtrip.js';
import { tmpDir } from '../support/samples.js';
import { REPO } from '../support/verify/collector-harness.js';

const NC = join(REPO, 'test/lab/standin-guest/nc');
const ROUTE = join(REPO, 'test/lab/standin-guest/route');
const haveBusybox = existsSync('/bin/busybox');
const SKIP = haveBusybox ? '' : ' (skipped: no /bin/busybox; scripts/setup.sh installs busybox-static)';

/** Runs it without blocking this process, where the listener answers (spawnSync would starve it). */
function run(args: string[], stdin: number | 'ignore'): Promise<{ status: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn('sh', args, { stdio: [stdin, 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let err = '';
    const timer = setTimeout(() => c.kill('SIGKILL'), 60_000);
    c.stdout!.on('data', (b: Buffer) => out.push(b));
    c.stderr!.on('data', (b: Buffer) => (err += b.toString()));
    c.on('error', reject);
    c.on('close', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout: Buffer.concat(out), stderr: err });
    });
  });
}

let listener: RoundTripListener | undefined;
afterEach(async () => {
  await listener?.close();
  listener = undefined;
});

describe(`the stand-in guest's nc and route${SKIP}`, () => {
  it('the collector calls nc with the flags the stand-in maps (-N -n -w 10 up, -d -n -w 10 down) and route -n get', () => {
    const collector = readFileSync(join(REPO, 'guest/fbxen-collect'), 'utf8');
    expect(collector).toContain('nc -N -n -w 10 "$_host" "$_up" <"$_src/net.bin"');
    expect(collector).toContain('nc -d -n -w 10 "$_host" "$_down"');
    expect(collector).toContain('route -n get "$_host"');
  });

  it.skipIf(!haveBusybox)('busybox nc behind the stand-in: 1 MiB up arrives complete (its end of input closes the sending half, as -N), 1 MiB down arrives byte for byte', async () => {
    listener = await startRoundTripListener({ address: '127.0.0.1', payloadBytes: 1 << 20 });
    const dir = tmpDir('standin-nc');
    const netBin = join(dir, 'net.bin');
    writeFileSync(netBin, listener.runFiles().netBin);
    const input = openSync(netBin, 'r');
    try {
      const up = await run([NC, '-N', '-n', '-w', '10', '127.0.0.1', String(listener.upPort)], input);
      expect(up.status, up.stderr).toBe(0);
    } finally {
      closeSync(input);
    }
    const down = await run([NC, '-d', '-n', '-w', '10', '127.0.0.1', String(listener.downPort)], 'ignore');
    expect(down.status, down.stderr).toBe(0);
    expect(Buffer.compare(down.stdout, listener.downPayload)).toBe(0);
    const rec = await listener.waitForRound({ timeoutMs: 30_000 });
    expect(rec.uploads.at(-1)).toMatchObject({ outcome: 'complete', receivedBytes: 1 << 20 });
    expect(rec.downloads.at(-1)).toMatchObject({ outcome: 'sent', sentBytes: 1 << 20 });
  }, 120_000);

  it.skipIf(!haveBusybox)('an option the collector never passes is refused (64), not dropped', () => {
    const r = spawnSync('sh', [NC, '-u', '127.0.0.1', '9'], { encoding: 'utf8' });
    expect(r.status).toBe(64);
    expect(r.stderr).toContain("option -u is not one fbxen's collector uses");
  });

  it.skipIf(!haveBusybox)('route -n get answers from the real routing table in FreeBSD\'s layout; no route: FreeBSD\'s words, status 1', () => {
    const lo = spawnSync('sh', [ROUTE, '-n', 'get', '127.0.0.1'], { encoding: 'utf8' });
    expect(lo.status).toBe(0);
    expect(lo.stdout).toBe('   route to: 127.0.0.1\n  interface: lo\n');
    const bad = spawnSync('sh', [ROUTE, '-n', 'get', '300.1.1.1'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(bad.stdout).toBe('route: route has not been found\n');
  });
});
