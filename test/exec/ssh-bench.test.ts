/**
 * Measures put() against plain scp for the issue's case, a 6 GiB raw image holding 50 MiB of data,
 * over the same master (so the master's write count is the bytes on the wire for both). Opt-in: it
 * writes 6 GiB to disk for scp and reads 18 GiB of holes for the checks. FBXEN_SSH_BENCH=1 runs it;
 * the figures go to docs/remote.md.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { SshSession, parseHostUrl, type SshTarget } from '../../src/core/exec/ssh.js';
import { makeSparseFile } from '../support/sparse.js';
import { sshdMissing, startSshd, type TestSshd } from '../support/sshd.js';

const skip = process.env.FBXEN_SSH_BENCH !== '1' ? 'set FBXEN_SSH_BENCH=1 to run (writes 6 GiB)' : sshdMissing();
let sshd: TestSshd | undefined;
let work: string;

beforeAll(async () => {
  if (skip) return;
  work = mkdtempSync(join(tmpdir(), 'ssh-bench-'));
  sshd = await startSshd();
});
afterAll(async () => {
  await sshd?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

const wchar = (pid: number) => Number(/^wchar: (\d+)/m.exec(readFileSync(`/proc/${pid}/io`, 'utf8'))![1]);
const sha = (path: string) => spawnSync('sha256sum', [path], { encoding: 'utf8' }).stdout.split(' ')[0];

it.skipIf(skip)(`put() vs scp: 6 GiB raw with 50 MiB of data${skip ? ` (skipped: ${skip})` : ''}`, { timeout: 1_800_000 }, async () => {
  const size = 6 * 1024 ** 3;
  // 50 MiB in 50 pieces of 1 MiB spread over the disk, as a freshly built image's are.
  const writes = Array.from({ length: 50 }, (_, i) => [Math.floor((i * size) / 50), Buffer.alloc(1 << 20, (i % 250) + 1)] as const);
  const local = makeSparseFile(join(work, 'disk.raw'), size, writes);
  const s = new SshSession(parseHostUrl(sshd!.url) as SshTarget, { knownHosts: sshd!.knownHosts, identity: sshd!.identity, remoteRoot: join(work, 'runs') }, { runner: createExecaRunner() });
  await s.open();
  try {
    const pid = (await s.masterPid())!;
    const dir = await s.mkdirRunDir('bench');
    let w0 = wchar(pid);
    const put = await s.put(local, dir);
    const putWire = wchar(pid) - w0;
    const putBlocks = statSync(put.remotePath).blocks * 512;

    const scpDir = join(work, 'scp');
    spawnSync('mkdir', [scpDir]);
    w0 = wchar(pid);
    const t0 = Date.now();
    const scp = spawnSync('scp', ['-q', '-o', 'BatchMode=yes', '-o', `ControlPath=${s.controlSocket!}`, '-o', 'ControlMaster=no', '-o', `UserKnownHostsFile=${sshd!.knownHosts}`, '-i', sshd!.identity, '-P', String(sshd!.port), local, `root@127.0.0.1:${scpDir}/`], { encoding: 'utf8' });
    const scpMs = Date.now() - t0;
    const scpWire = wchar(pid) - w0;
    expect(scp.status, scp.stderr).toBe(0);
    const scpBlocks = statSync(join(scpDir, 'disk.raw')).blocks * 512;

    const mib = (n: number) => `${(n / 1024 ** 2).toFixed(1)} MiB`;
    console.log(
      [
        `put(): ${put.durationMs} ms, tar stream ${mib(put.bytesSent)}, master wrote ${mib(putWire)}, remote allocated ${mib(putBlocks)}`,
        `scp:   ${scpMs} ms, master wrote ${mib(scpWire)}, remote allocated ${mib(scpBlocks)}`,
      ].join('\n'),
    );
    expect(put.bytesSent).toBeLessThan(52 << 20);
    expect(putWire).toBeLessThan(56 << 20);
    expect(scpWire).toBeGreaterThan(size);
    expect(statSync(put.remotePath).size).toBe(size);
    expect(sha(put.remotePath)).toBe(sha(local));
  } finally {
    await s.close();
  }
});
