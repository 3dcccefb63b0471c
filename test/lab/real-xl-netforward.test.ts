/**
 * Real-xl test N: the netfront round trip's remote forward (src/core/net/remote-forward.ts, docs/remote.md)
 * on the lab's REAL dom0 and its real sshd (OpenSSH of Debian 12, `GatewayPorts clientspecified`), not the
 * test sshd on 127.0.0.1 with a stand-in `ip`. `fbxen boot --host lab` of the HVM sample image (NOT
 * bootable: it times out as documented, exit 6); while it waits, the run's net.json names xenbr0's
 * 10.99.0.1 and two ports, `ss -ltn` in the dom0 shows sshd bound them on 10.99.0.1 only, and the DOM0
 * STANDS IN FOR THE GUEST (whose vif is on the same xenbr0; dom0 reaches its own address through its
 * local route, not through a vif): it uploads the run's payload (net.bin, copied in) to the up port and
 * reads the down port. What fbxen's listener saw comes from the run's net-host.json, kept on a timeout
 * too. After the boot: the forwards are gone from ss, the domain destroyed, the run directory removed.
 * Enabled by FBXEN_LAB_TESTS=1 (scripts/lab-test.sh); skipped with the reason otherwise.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { readHostKnowledge } from '../../src/core/net/host-record.js';
import type { HostRoundTrip } from '../../src/core/net/roundtrip.js';
import { CLI } from '../support/cli.js';
import { enabled, fbxenChild, labConfig, labDir, labSh, SKIP, useLab, waitFor, xlList } from './real-xl-support.js';

const BRIDGE_ADDR = '10.99.0.1'; // scripts/lab/dom0-init.sh gives xenbr0 this address
const SCRATCH = '/tmp/fbxen-netforward';
const lab = useLab('real-xl-netforward', 'fbxen-real-n', ['/var/lib/fbxen/runs/real-n', SCRATCH]);

/** The local addresses (ADDR:PORT) `ss -ltn` lists with this port: iproute2 6.1 prints `LISTEN 0 128 10.99.0.1:41234 0.0.0.0:*`. */
const listening = (ss: string, port: number) =>
  ss.split('\n').map((l) => l.trim().split(/\s+/)[3] ?? '').filter((local) => local.endsWith(`:${port}`));

/** A file here into the dom0 (stdin of `fbxen lab ssh`, which hands it to ssh). */
function copyIn(file: string, to: string): Promise<number | null> {
  const child = spawn(process.execPath, [CLI, 'lab', 'ssh', '--dir', labDir, '--', `mkdir -p ${SCRATCH} && cat > ${to}`], { stdio: ['pipe', 'ignore', 'inherit'] });
  createReadStream(file).pipe(child.stdin);
  return new Promise((resolve) => child.on('close', (code) => resolve(code)));
}

/**
 * The guest's side, played by the dom0 (python3 is in the lab's image): the payload to the up port, then
 * a half-close (the listener compares on FIN), then everything the down port sends until the host closes.
 * Prints: bytes sent, upload ms, bytes received, their sha256, download ms.
 */
const guestSide = (up: number, down: number) => `python3 - <<'EOF'
import hashlib, socket, time
a = '${BRIDGE_ADDR}'
data = open('${SCRATCH}/net.bin', 'rb').read()
t = time.monotonic()
s = socket.create_connection((a, ${up}), 30); s.settimeout(60)
s.sendall(data); s.shutdown(socket.SHUT_WR)
while s.recv(65536): pass
s.close(); tu = time.monotonic() - t
t = time.monotonic()
s = socket.create_connection((a, ${down}), 30); s.settimeout(60)
buf = bytearray()
while True:
    b = s.recv(65536)
    if not b: break
    buf += b
s.close(); td = time.monotonic() - t
print(len(data), round(tu * 1000), len(buf), hashlib.sha256(buf).hexdigest(), round(td * 1000))
EOF`;

describe(`real xl in the lab: the netfront round trip through the real sshd's remote forward${SKIP}`, () => {
  it.skipIf(!enabled)('boot --host lab: net.json names xenbr0\'s 10.99.0.1, sshd binds both ports there only, the dom0 (standing in for the guest) round-trips the payload byte for byte through the forward; after the timeout the forwards are cancelled, the domain destroyed', async () => {
    const times: string[] = [];
    let last = Date.now();
    const step = (what: string) => {
      const now = Date.now();
      times.push(`${what} ${((now - last) / 1000).toFixed(1)} s`);
      last = now;
    };
    const artifacts = join(lab.work, 'runs');
    const dir = join(artifacts, 'fbxen-real-n', 'real-n');
    // 90 s of waiting for a frame after xl create: the dom0's steps below take about 20 s under emulation
    const boot = fbxenChild(['--config', labConfig(lab.work), 'boot', '--host', 'lab', '--image', lab.image, '--name', 'fbxen-real-n', '--run-id', 'real-n', '--vcpus', '1', '--memory', '512', '--timeout', '90', '--artifacts', artifacts]);

    // net.json is written before the CD is made, so while the boot is still copying and creating
    const net = await waitFor('net.json and net.bin in the run directory', async () => {
      if (!existsSync(join(dir, 'net.json')) || !existsSync(join(dir, 'net.bin'))) return undefined;
      return JSON.parse(readFileSync(join(dir, 'net.json'), 'utf8')) as { address: string; upPort: number; downPort: number; payloadBytes: number; upSha256: string; forward?: { host: string; bridge: string } };
    }, 300_000, boot.done);
    step('net.json written');
    expect(net).toMatchObject({ address: BRIDGE_ADDR, forward: { bridge: 'xenbr0' } });
    expect(net.upPort).not.toBe(net.downPort);
    const bin = readFileSync(join(dir, 'net.bin'));
    expect(createHash('sha256').update(bin).digest('hex')).toBe(net.upSha256);

    // where the real sshd bound the two forwards: 10.99.0.1 only (not 0.0.0.0, [::], 127.0.0.1)
    const ss = await labSh('ss -ltn');
    step('ss -ltn in dom0');
    expect(ss.code, ss.stderr).toBe(0);
    expect(listening(ss.stdout, net.upPort), ss.stdout).toEqual([`${BRIDGE_ADDR}:${net.upPort}`]);
    expect(listening(ss.stdout, net.downPort), ss.stdout).toEqual([`${BRIDGE_ADDR}:${net.downPort}`]);

    expect(await copyIn(join(dir, 'net.bin'), `${SCRATCH}/net.bin`)).toBe(0);
    step(`net.bin (${bin.length} bytes) copied into dom0`);
    const rt = await labSh(guestSide(net.upPort, net.downPort));
    step('round trip from dom0');
    expect(rt.code, rt.stderr).toBe(0);
    const [sent, upMs, got, gotSha, downMs] = rt.stdout.trim().split(/\s+/);
    expect(Number(sent)).toBe(net.payloadBytes);
    expect(Number(got)).toBe(net.payloadBytes);
    expect(boot.child.exitCode).toBeNull(); // all of it while the boot still waited

    const r = await boot.done;
    step('boot ended (timeout)');
    expect(r.code, r.stderr).toBe(6);
    expect(r.stderr).toContain('no collector frame of run real-n on the console within 90 s');

    // what fbxen's listener saw, through the forward (net-host.json: kept on a timeout too)
    const known = await readHostKnowledge(dir);
    expect('reason' in known ? known.reason : '').toBe('');
    const host = (known as { roundTrip: HostRoundTrip }).roundTrip;
    expect(host).toMatchObject({ address: BRIDGE_ADDR, upPort: net.upPort, downPort: net.downPort, forwardedBy: expect.stringContaining('ssh forward') });
    expect(host.uploads.map((u) => [u.outcome, u.receivedBytes, u.firstDifference])).toEqual([['complete', net.payloadBytes, null]]);
    expect(host.downloads.map((d) => [d.outcome, d.sentBytes])).toEqual([['sent', net.payloadBytes]]);
    expect(gotSha).toBe(host.downSha256); // the dom0 got the listener's download payload byte for byte

    // after the boot: no forward left on the dom0, no domain, no run directory
    const after = await labSh('ss -ltn; echo ---; ls -A /var/lib/fbxen/runs');
    step('checks after the boot');
    const [ssAfter, runsAfter] = after.stdout.split('---\n');
    expect(listening(ssAfter!, net.upPort)).toEqual([]);
    expect(listening(ssAfter!, net.downPort)).toEqual([]);
    expect(runsAfter!.trim()).toBe('');
    expect((await xlList()).has('fbxen-real-n')).toBe(false);

    const up = host.uploads[0]!;
    process.stderr.write(
      `real sshd forward, ${net.payloadBytes} bytes each way: upload ${upMs} ms in dom0 (listener: first byte to end ${up.endedAt - (up.firstByteAt ?? up.connectedAt)} ms), download ${downMs} ms in dom0\nsteps: ${times.join('; ')}\n`,
    );
  }, 900_000);
});
