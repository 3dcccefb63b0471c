/**
 * The console client's terminal (xl-commands.ts CONSOLE_ON_A_TERMINAL). The real xenconsole of Xen 4.17
 * reads its stdin only when stdin and stdout are terminals (tools/console/client/main.c: interactive is
 * isatty(0) && isatty(1)); from fbxen's pipe nothing typed reached the guest (found on the lab's real xl).
 * The stand-in below (a SIMULATION of that rule, in python3) is the console: it says whether it reads,
 * makes its terminal raw as xenconsole does, and reports each byte string it reads.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { CONSOLE_ON_A_TERMINAL } from '../../src/core/toolstack/xl/xl-commands.js';

const dir = mkdtempSync(join(tmpdir(), 'fbxen-console-tty-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const XENCONSOLE = join(dir, 'xenconsole.py');
writeFileSync(
  XENCONSOLE,
  [
    'import os, sys, termios, tty',
    'interactive = os.isatty(0) and os.isatty(1)',
    'if interactive:',
    '    tty.setraw(0, termios.TCSANOW)',
    'os.write(1, b"interactive=%d\\n" % interactive)',
    'if not interactive:',
    '    import time',
    '    time.sleep(float(sys.argv[1]))',
    '    sys.exit(0)',
    'while True:',
    '    b = os.read(0, 100)',
    '    if not b:',
    '        os.write(1, b"eof\\n"); break',
    '    os.write(1, b"got:" + repr(b).encode() + b"\\n")',
  ].join('\n'),
);

interface Client {
  out(): string;
  exited: Promise<{ code: number | null; ms: number }>;
  write(s: string): void;
  end(): void;
}

function start(argv: string[]): Client {
  const started = Date.now();
  const p = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'ignore'] });
  let out = '';
  p.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const exited = new Promise<{ code: number | null; ms: number }>((r) => p.on('close', (code) => r({ code, ms: Date.now() - started })));
  return { out: () => out, exited, write: (s) => p.stdin.write(s), end: () => p.stdin.end() };
}

const wrapped = (...console: string[]) => start(['sh', '-c', CONSOLE_ON_A_TERMINAL, 'fbxen-console', ...console]);

async function until(pred: () => boolean, ms = 20_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred() && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
}

describe('the console client on a terminal (SIMULATION of xenconsole\'s isatty rule)', () => {
  it('from a plain pipe the console does not read at all (the real difference)', async () => {
    const c = start(['python3', XENCONSOLE, '1']);
    c.write('echo typed\n');
    c.end();
    const { code } = await c.exited;
    expect(code).toBe(0);
    expect(c.out()).toBe('interactive=0\n');
  });

  it('inside the wrapper it reads what is typed, byte for byte, and nothing is echoed back', async () => {
    const c = wrapped('python3', XENCONSOLE, '0');
    await until(() => c.out().includes('interactive=1'));
    c.write('sh /usr/local/libexec/fbxen-collect --frame --run r1 --phase pre-migrate\n');
    await until(() => c.out().includes('got:'));
    c.write('root\n');
    await until(() => (c.out().match(/got:/g) ?? []).length >= 2);
    expect(c.out()).toContain("got:b'sh /usr/local/libexec/fbxen-collect --frame --run r1 --phase pre-migrate\\n'");
    expect(c.out()).toContain("got:b'root\\n'");
    // raw: the typed text does not come back as terminal echo
    expect(c.out().match(/fbxen-collect/g)).toHaveLength(1);
    c.end();
    await c.exited;
  });

  it('detach (our stdin ends): the client ends by a signal, and no ^D reaches the console (it would log the guest out)', async () => {
    const c = wrapped('python3', XENCONSOLE, '0');
    await until(() => c.out().includes('interactive=1'));
    c.end();
    const { ms } = await c.exited;
    expect(c.out()).not.toContain('\\x04');
    expect(c.out()).not.toContain('eof');
    // script's own kill sequence takes about 2 s; fbxen's detach bound is 5 s (xl-console.ts DETACH_BOUND_MS)
    expect(ms).toBeLessThan(20_000);
  });

  it('the console ending by itself (the domain went) ends the client although our stdin stays open', async () => {
    const c = wrapped('sh', '-c', 'echo bye');
    const { code } = await c.exited;
    expect(code).toBe(0);
    expect(c.out()).toContain('bye');
  });
});
