/**
 * Issue 14 point 7: an interrupt is never lost. `fbxen verify` reads a large console log through a FIFO;
 * the signal is sent while it waits for the log (its "read evidence" step has started), then the log is
 * written. Whatever the command does after the signal, the process exits 130 (SIGINT) or 143 (SIGTERM)
 * and prints no verdict. The FIFO makes the order signal-then-work certain, with no timing.
 */
import { spawn, spawnSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { encodeConsoleFrame, packBundle, readBundle } from '../../src/core/verify/index.js';
import { CLI, ensureBuilt } from '../support/cli.js';
import { FIXTURES } from '../support/verify/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-cli-interrupt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const haveMkfifo = spawnSync('mkfifo', ['--version']).status === 0;

/** A console log of about 40 MB of boot noise, then a healthy guest's framed bundle (under its own run). */
async function largeConsoleLog(): Promise<{ log: string; run: string }> {
  const bundle = await readBundle(join(FIXTURES, '13.2-healthy-derived'));
  const noise = 'xn0: link state changed to UP; some boot chatter that a long console log holds\n'.repeat(500_000);
  const run = bundle.meta.run;
  if (!run) throw new Error('the fixture names no run');
  return { log: `${noise}${encodeConsoleFrame(await packBundle(bundle), run, 'boot')}`, run };
}

function verifyInterrupted(signal: 'SIGINT' | 'SIGTERM' | undefined, fifo: string, { log, run }: { log: string; run: string }, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; sent: boolean }> {
  ensureBuilt();
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, 'verify', '--console-log', fifo, '--run', run, ...extra], { cwd: dir, env: { ...process.env, CI: 'true', NO_COLOR: '1' } });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      if (!sent && /read evidence/.test(stderr)) {
        sent = true;
        if (signal) child.kill(signal);
        // Only once fbxen has the signal does the log arrive: all its work happens after the interrupt.
        const w = createWriteStream(fifo);
        w.on('error', reject);
        w.end(log);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr, sent }));
  });
}

describe('an interrupt during verify wins over the verdict', () => {
  // The same run without a signal passes: what the interrupted runs withhold is a real PASS.
  it.skipIf(!haveMkfifo)('without a signal: exit 0, PASS, the JUnit report written', async () => {
    const fifo = join(dir, 'none.fifo');
    const junit = join(dir, 'none.junit.xml');
    spawnSync('mkfifo', [fifo]);
    const r = await verifyInterrupted(undefined, fifo, await largeConsoleLog(), ['--junit', junit]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('PASS');
    expect(existsSync(junit)).toBe(true);
  });

  it.skipIf(!haveMkfifo)('SIGTERM: exit 143, no PASS on stdout, no JUnit report written', async () => {
    const fifo = join(dir, 'term.fifo');
    const junit = join(dir, 'term.junit.xml');
    spawnSync('mkfifo', [fifo]);
    const r = await verifyInterrupted('SIGTERM', fifo, await largeConsoleLog(), ['--junit', junit]);
    expect(r.sent).toBe(true);
    expect(r.stdout).not.toContain('PASS');
    // a CI job reads the JUnit file: one written after the kill would show the step green
    expect(existsSync(junit)).toBe(false);
    expect(r.stderr).toContain('SIGTERM received');
    expect(r.code).toBe(143);
  });

  it.skipIf(!haveMkfifo)('SIGINT with --json: exit 130, stdout is the interrupt as one JSON document, no verdict', async () => {
    const fifo = join(dir, 'int.fifo');
    spawnSync('mkfifo', [fifo]);
    const r = await verifyInterrupted('SIGINT', fifo, await largeConsoleLog(), ['--json']);
    expect(r.sent).toBe(true);
    expect(JSON.parse(r.stdout)).toEqual({ error: { class: 'InterruptedError', message: 'interrupted by SIGINT', hint: null, exitCode: 130 } });
    expect(r.code).toBe(130);
  });
});
