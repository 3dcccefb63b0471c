/**
 * The boot flow over the Toolstack interface alone (core/boot/boot.ts bootOn), with a toolstack double
 * that records every call: the order of the steps, a guest that ignores shutdown, a guest that goes away,
 * and an interrupt during create that must destroy the domain of this run (found by name and uuid) and
 * leave another tool's domain of the same name alone.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { bootOn, type BootRequest } from '../../src/core/boot/boot.js';
import { InterruptedError, ToolstackError } from '../../src/core/errors.js';
import type { Runner } from '../../src/core/exec/runner.js';
import { silentProgress } from '../../src/core/progress.js';
import type { ConsoleAttachment, Created, CreateOptions, DomainRef, DomainState, GuestSpec, PlanStep, Toolstack } from '../../src/core/toolstack/types.js';
import { CleanupStack } from '../../src/core/util/cleanup.js';
import { encodeConsoleFrame, packBundle } from '../../src/core/verify/index.js';
import { sampleBundle } from './harness.js';

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

const noRunner: Runner = {
  run: () => Promise.reject(new Error('the flow ran a command itself')),
  stream: () => {
    throw new Error('the flow ran a command itself');
  },
};

interface Behaviour {
  /** what the guest does once created */
  guest: 'frame' | 'silent' | 'gone';
  /** the guest powers off when asked */
  obeysShutdown?: boolean;
  /** create waits for the abort after the domain exists, without reporting it (onDomain) */
  hangInCreate?: boolean;
}

/** A toolstack double: domains in a list, every call recorded with its domain's id. */
class DoubleToolstack implements Toolstack {
  readonly name = 'xl' as const;
  readonly configFile = 'double.cfg';
  readonly capabilities = { saveRestore: false, liveMigrate: false, migrateToHost: false, pvh: false, cdAsIso: true, remote: false, consoleAfterMigrate: 'reattach', checkpoint: 'file' } as const;
  readonly calls: string[] = [];
  domains: Array<DomainRef & { state: DomainState }> = [];
  private nextId = 7;
  constructor(private readonly b: Behaviour) {}

  prepare(g: GuestSpec): GuestSpec {
    return { ...g, uuid: g.uuid ?? `uuid-of-${g.name}`, mac: g.mac ?? '00:16:3e:00:00:01' };
  }
  async facts() {
    return { host: 'double', detail: {} };
  }
  async preflight() {
    this.calls.push('preflight');
    return this.facts();
  }
  async stage(files: { image: string; cd?: string | undefined }) {
    this.calls.push('stage');
    return { ...files, remove: async () => void this.calls.push('unstage') };
  }
  async create(guest: GuestSpec, o: CreateOptions): Promise<Created> {
    this.calls.push('create');
    const domain = { name: guest.name, id: String(this.nextId++), host: 'localhost', uuid: guest.uuid, state: 'running' as DomainState };
    this.domains.push(domain);
    if (this.b.hangInCreate) {
      await new Promise<void>((resolve) => o.signal.addEventListener('abort', () => resolve(), { once: true }));
      o.signal.throwIfAborted();
    }
    o.onDomain?.(domain);
    const console = o.console as Writable;
    if (this.b.guest === 'frame') console.write(`SeaBIOS\n${encodeConsoleFrame(await packBundle(sampleBundle('r1')), 'r1', 'boot')}`);
    if (this.b.guest === 'gone') this.domains = this.domains.filter((d) => d.id !== domain.id);
    const attachment: ConsoleAttachment = { domain, write: () => undefined, detach: async () => void this.calls.push(`detach ${domain.id}`), done: Promise.resolve() };
    return { domain, console: attachment, config: '', keepHint: 'kept' };
  }
  async find(name: string, uuid?: string) {
    this.calls.push(`find ${name}${uuid ? ` ${uuid}` : ''}`);
    return this.domains.find((d) => d.name === name && (uuid === undefined || d.uuid === uuid));
  }
  async locate() {
    return undefined;
  }
  async state(d: DomainRef) {
    return this.domains.find((x) => x.id === d.id)?.state;
  }
  async attachConsole() {
    return undefined;
  }
  async shutdown(d: DomainRef) {
    this.calls.push(`shutdown ${d.id}`);
    if (this.b.obeysShutdown) this.domains = this.domains.filter((x) => x.id !== d.id);
    return this.b.obeysShutdown ?? false;
  }
  async destroy(d: DomainRef) {
    this.calls.push(`destroy ${d.id}`);
    this.domains = this.domains.filter((x) => x.id !== d.id);
  }
  async save(): Promise<never> {
    throw new Error('not here');
  }
  async restore(): Promise<never> {
    throw new Error('not here');
  }
  async migrationRoute(): Promise<never> {
    throw new Error('not here');
  }
  async migrate(): Promise<never> {
    throw new Error('not here');
  }
  plan(step: PlanStep) {
    return [`plan ${step.step}`];
  }
  mapError(err: unknown) {
    return new ToolstackError(String(err));
  }
  async close() {
    this.calls.push('close');
  }
}

function setup(): { dir: string; image: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fbxen-bootflow-'));
  dirs.push(dir);
  mkdirSync(join(dir, 'out'));
  const image = join(dir, 'out', 'img.raw');
  const data = Buffer.alloc(64 * 1024);
  data[510] = 0x55;
  data[511] = 0xaa;
  writeFileSync(image, data);
  return { dir, image };
}

function request(image: string, over: Partial<BootRequest> = {}): BootRequest {
  return { toolstack: 'xl', image, name: 'fbxen-flow', vcpus: 1, memoryMiB: 512, emptyCdrom: true, keep: false, timeoutSec: 10, dryRun: false, verify: false, artifactsRoot: 'runs', runId: 'r1', graceSec: 1, ...over };
}

async function boot(ts: DoubleToolstack, over: Partial<BootRequest> = {}, controller = new AbortController()) {
  const { dir, image } = setup();
  const cleanup = new CleanupStack();
  const result = await bootOn(() => ts, request(image, over), { runner: noRunner, progress: silentProgress, signal: controller.signal, cleanup, env: {}, cwd: dir, pollMs: 10 }).catch((e: unknown) => e);
  return { result, dir, cleanup };
}

describe('the boot flow over the Toolstack interface (a toolstack double)', () => {
  it('takes the steps in order through the interface only, and removes what it staged', async () => {
    const ts = new DoubleToolstack({ guest: 'frame', obeysShutdown: true });
    const { result, dir } = await boot(ts);
    expect(result).toMatchObject({ run: 'r1', name: 'fbxen-flow', domain: { id: '7', kept: false } });
    expect(ts.calls).toEqual(['preflight', 'stage', 'create', 'shutdown 7', 'find fbxen-flow', 'detach 7', 'detach 7', 'unstage', 'close']);
    expect(readFileSync(join(dir, 'runs', 'fbxen-flow', 'r1', 'console.log'), 'utf8').startsWith('SeaBIOS\nFBXEN1 BEGIN r1 boot')).toBe(true);
  });

  it('a guest that ignores the shutdown is destroyed: its domain, no other', async () => {
    const ts = new DoubleToolstack({ guest: 'frame' });
    ts.domains.push({ name: 'other', id: '3', host: 'localhost', state: 'running' });
    await boot(ts);
    expect(ts.calls.filter((c) => c.startsWith('destroy'))).toEqual(['destroy 7']);
    expect(ts.domains.map((d) => d.id)).toEqual(['3']);
  });

  it('a guest that goes away ends the wait with the reason (exit 5), not at the timeout', async () => {
    const ts = new DoubleToolstack({ guest: 'gone' });
    const started = Date.now();
    const { result } = await boot(ts, { timeoutSec: 60 });
    expect(result).toBeInstanceOf(ToolstackError);
    expect((result as Error).message).toMatch(/went away/);
    expect(Date.now() - started).toBeLessThan(30_000);
  });

  it('an interrupt before create reported the domain: the one with this run name and uuid is destroyed, another tool\'s is not', async () => {
    const ts = new DoubleToolstack({ guest: 'silent', hangInCreate: true });
    // Another tool's domain of the same name but another uuid, listed first: find(name) alone would take it.
    ts.domains.push({ name: 'fbxen-flow', id: '2', host: 'localhost', uuid: 'someone-else', state: 'running' });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new InterruptedError('SIGINT')), 200);
    const { result } = await boot(ts, {}, controller);
    expect(result).toBeInstanceOf(InterruptedError);
    expect(ts.calls).toContain('find fbxen-flow uuid-of-fbxen-flow');
    expect(ts.calls.filter((c) => c.startsWith('destroy'))).toEqual(['destroy 7']);
    expect(ts.domains.map((d) => d.id)).toEqual(['2']);
  });
});
