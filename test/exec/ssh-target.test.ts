/** --host ssh://USER@HOST[:PORT]: parsing, the canonical form, and what can never get through. */
import { spawnSync } from 'node:child_process';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InputError } from '../../src/core/errors.js';
import type { Runner } from '../../src/core/exec/runner.js';
import { SshSession } from '../../src/core/exec/ssh.js';
import { remoteQuote } from '../../src/core/exec/ssh-remote.js';
import { formatHostUrl, parseHostUrl, type SshTarget } from '../../src/core/exec/ssh-target.js';

const lower = 'abcdefghijklmnopqrstuvwxyz';
const alnum = `${lower}0123456789`;
const chars = (set: string) => fc.constantFrom(...set.split(''));
const userArb = fc.tuple(chars(`${lower}_`), fc.array(chars(`${alnum}_.-`), { maxLength: 31 })).map(([a, b]) => a + b.join(''));
const labelArb = fc
  .tuple(chars(alnum), fc.array(chars(`${alnum}-`), { maxLength: 20 }), chars(alnum))
  .map(([a, mid, z]) => a + mid.join('') + z);
const hostArb = fc.oneof(
  fc.array(labelArb, { minLength: 1, maxLength: 4 }).map((l) => l.join('.')),
  fc.ipV4(),
  fc.ipV6().filter((h) => !h.includes('%')),
);
const targetArb: fc.Arbitrary<SshTarget> = fc.record({
  kind: fc.constant('ssh' as const),
  user: userArb,
  host: hostArb.map((h) => h.toLowerCase()),
  port: fc.integer({ min: 1, max: 65535 }),
});

describe('parseHostUrl', () => {
  it('reads the forms the README gives, and this machine when absent or localhost', () => {
    expect(parseHostUrl(undefined)).toEqual({ kind: 'local' });
    expect(parseHostUrl('localhost')).toEqual({ kind: 'local' });
    expect(parseHostUrl('ssh://root@dom0.example.org')).toEqual({ kind: 'ssh', user: 'root', host: 'dom0.example.org', port: 22 });
    expect(parseHostUrl('ssh://root@192.0.2.10:2222')).toEqual({ kind: 'ssh', user: 'root', host: '192.0.2.10', port: 2222 });
    expect(parseHostUrl('ssh://root@[2001:DB8::10]:2200/')).toEqual({ kind: 'ssh', user: 'root', host: '2001:db8::10', port: 2200 });
    expect(parseHostUrl('ssh://dom0')).toEqual({ kind: 'ssh', user: 'root', host: 'dom0', port: 22 });
  });

  it('names the form and the wrong part', () => {
    const cases: [string, RegExp][] = [
      ['root@dom0', /must start with ssh:\/\//],
      ['ssh://root@dom0:0', /port "0" must be 1-65535/],
      ['ssh://root@dom0:65536', /port "65536"/],
      ['ssh://root:secret@dom0', /port|user/],
      ['ssh://root@[fe80::1%eth0]', /not an IPv6 address/],
      ['ssh://root@dom0/var/tmp', /only a user, a host and a port/],
      ['ssh://r oot@dom0', /the user "r oot"/],
      ['ssh://root@-oProxyCommand=sh', /the host "-oProxyCommand=sh"/],
      ['ssh://-oProxyCommand=sh@dom0', /the user "-oProxyCommand=sh"/],
    ];
    for (const [value, why] of cases) {
      let err: unknown;
      try {
        parseHostUrl(value);
      } catch (e) {
        err = e;
      }
      expect(err, value).toBeInstanceOf(InputError);
      expect((err as Error).message, value).toMatch(/is not ssh:\/\/USER@HOST\[:PORT\]/);
      expect((err as Error).message, value).toMatch(why);
      expect((err as InputError).hint, value).toMatch(/ssh:\/\/root@/);
    }
  });

  it('property: format and parse round-trip every valid target (1,000 runs)', () => {
    fc.assert(
      fc.property(targetArb, (t) => {
        const url = formatHostUrl(t);
        expect(parseHostUrl(url)).toEqual(t);
        expect(formatHostUrl(parseHostUrl(url))).toBe(url);
      }),
      { numRuns: 1000 },
    );
  });

  it('property: whatever the string, an accepted user and host hold no shell or option syntax (3,000 runs)', () => {
    const hostile = fc.constantFrom(' ', '\t', '\n', ';', '|', '&', '$', '`', '(', ')', '<', '>', '"', "'", '\\', '*', '?', '~', '!', '{', '}', '=', ',');
    const piece = fc.oneof(userArb, labelArb, fc.string({ maxLength: 12 }), hostile, fc.constantFrom('-oProxyCommand=sh -c x', '-F/dev/null', '-o', '@', ':', '[', ']', '::1', '%'));
    const candidate = fc.tuple(fc.array(piece, { maxLength: 3 }), fc.array(piece, { maxLength: 3 }), fc.option(fc.oneof(fc.integer({ min: -5, max: 70000 }).map(String), piece))).map(
      ([u, h, p]) => `ssh://${u.join('')}@${h.join('')}${p === null ? '' : `:${p}`}`,
    );
    fc.assert(
      fc.property(fc.oneof(candidate, fc.string()), (value) => {
        let t;
        try {
          t = parseHostUrl(value);
        } catch (err) {
          expect(err).toBeInstanceOf(InputError);
          return;
        }
        if (t.kind === 'local') return;
        expect(t.user).toMatch(/^[A-Za-z_][A-Za-z0-9_.-]*$/);
        expect(t.host).toMatch(/^[a-z0-9][a-z0-9.:-]*$/);
        expect(Number.isInteger(t.port) && t.port >= 1 && t.port <= 65535).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('property: a user or host with a space or a shell metacharacter is refused (1,000 runs)', () => {
    const bad = fc.constantFrom(' ', ';', '|', '&', '$(', '`', '"', "'", '\\', '*', '\n', '<', '>');
    fc.assert(
      fc.property(userArb, labelArb, bad, fc.boolean(), fc.nat(20), (user, host, b, inUser, at) => {
        const u = inUser ? user.slice(0, at) + b + user.slice(at) : user;
        const h = inUser ? host : host.slice(0, at) + b + host.slice(at);
        expect(() => parseHostUrl(`ssh://${u}@${h}`)).toThrow(InputError);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('the ssh command lines', () => {
  const noRunner: Runner = {
    run: () => Promise.reject(new Error('plan only')),
    stream: () => {
      throw new Error('plan only');
    },
  };

  it('put the destination after "--", options before it, and send no environment', () => {
    const s = new SshSession({ kind: 'ssh', user: 'root', host: '2001:db8::10', port: 2200 }, { knownHosts: '/k/known_hosts', identity: '/k/id' }, { runner: noRunner, env: { LANG: 'C.UTF-8', PATH: '/usr/bin' } });
    const open = s.plan.open();
    expect(open[0]).toMatch(/^mkdir -m 0700 /);
    const line = open[1]!;
    expect(line).toContain('-o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/k/known_hosts -o GlobalKnownHostsFile=/dev/null -i /k/id -o IdentitiesOnly=yes');
    expect(line).toContain('-o ControlMaster=yes -o ControlPersist=no -p 2200 -l root -- 2001:db8::10 ');
    expect(s.plan.run('xl', ['list'])).toMatch(/ -o ControlMaster=no -p 2200 -l root -- 2001:db8::10 'exec sh -c /);
    expect(s.plan.run('xl', ['console', '3'], { readsStdin: true })).toMatch(/ -- 2001:db8::10 'exec xl console 3'$/);
    expect(s.plan.put('/images/disk.raw', '/var/lib/fbxen/runs/r1')).toMatch(/^tar --create --file=- --sparse .* -- disk.raw \| ssh .* -- 2001:db8::10 'exec sh -c /);
    expect(s.plan.close()[0]).toMatch(/ -O exit -p 2200 -l root -- 2001:db8::10$/);
  });

  it('refuses a run id that is not a name (it becomes a path on the host)', () => {
    const s = new SshSession({ kind: 'ssh', user: 'root', host: 'dom0', port: 22 }, {}, { runner: noRunner });
    expect(() => s.plan.mkdirRunDir('../etc')).toThrow(/is not 1-64 of/);
    expect(() => s.plan.removeRunDir('')).toThrow(/is not 1-64 of/);
    expect(s.plan.removeRunDir('run-1')).toMatch(/\/var\/lib\/fbxen\/runs run-1'?$/);
  });
});

describe('the remote runs directory', () => {
  const noRunner: Runner = { run: () => Promise.reject(new Error('plan only')), stream: () => { throw new Error('plan only'); } };
  const at = (remoteRoot: string) => new SshSession({ kind: 'ssh', user: 'root', host: 'dom0', port: 22 }, { remoteRoot }, { runner: noRunner });

  it('takes an absolute path, a trailing slash dropped', () => {
    expect(at('/srv/fbxen/').plan.removeRunDir('r1')).toMatch(/ fbxen \/srv\/fbxen r1'$/);
    expect(at('/srv/fbxen').plan.removeRunDir('r1')).toMatch(/ fbxen \/srv\/fbxen r1'$/);
  });

  it('refuses /, relative paths and . or .. parts (removeRunDir must stay inside it)', () => {
    for (const bad of ['/', 'runs', './runs', '/srv/../etc', '/srv/./runs', '/srv//runs', '', '/srv/runs\n/etc']) {
      expect(() => at(bad), JSON.stringify(bad)).toThrow(/must be an absolute path below \/ without \. or \.\. parts/);
    }
  });
});

describe('key and known_hosts paths', () => {
  const noRunner: Runner = { run: () => Promise.reject(new Error('plan only')), stream: () => { throw new Error('plan only'); } };
  const t: SshTarget = { kind: 'ssh', user: 'root', host: 'dom0', port: 22 };

  it('refuses paths ssh would split or expand, naming the option', () => {
    expect(() => new SshSession(t, { knownHosts: '/ci/my keys/known_hosts' }, { runner: noRunner })).toThrow(/--known-hosts "\/ci\/my keys\/known_hosts": ssh would not read that path as it is/);
    expect(() => new SshSession(t, { identity: '/ci/id_%u' }, { runner: noRunner })).toThrow(/--identity "\/ci\/id_%u"/);
  });

  it('makes relative paths absolute', () => {
    const line = new SshSession(t, { knownHosts: 'kh', identity: 'id' }, { runner: noRunner }).plan.open()[1]!;
    expect(line).toContain(`UserKnownHostsFile=${process.cwd()}/kh`);
    expect(line).toContain(`-i ${process.cwd()}/id `);
  });
});

describe('remoteQuote', () => {
  it('property: the real sh reads any argument back unchanged, exactly once (300 runs)', () => {
    const arg = fc.oneof(fc.string({ unit: 'grapheme', maxLength: 30 }), fc.constantFrom("'", "''", '$(id)', '`id`', '*', '\n', '\\', '"$HOME"', '-n', '', ' a  b '));
    fc.assert(
      fc.property(fc.array(arg, { minLength: 1, maxLength: 4 }), (args) => {
        const script = `for a in ${args.map(remoteQuote).join(' ')}; do printf '%s\\0' "$a"; done`;
        const r = spawnSync('sh', ['-c', script], { encoding: 'utf8' });
        expect(r.status).toBe(0);
        expect(r.stdout.split('\0').slice(0, -1)).toEqual(args);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a NUL byte (it would cut the argument short)', () => {
    expect(() => remoteQuote('a\0b')).toThrow(InputError);
  });
});
