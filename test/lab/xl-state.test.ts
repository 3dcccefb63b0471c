/**
 * A difference between the real xl and the fake one, found in the lab (docs/lab.md, "real xl vs the
 * fake"): on a busy host the real `xl list` shows a running guest whose vCPU waits for a CPU with no
 * flag at all (`------`), between `r-----` and `-b----`. fbxen took it for "unknown, not running" and
 * refused to migrate it. The fake xl lists running domains so with scenario.runnable.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createExecaRunner } from '../../src/core/exec/runner.js';
import { XlDriver } from '../../src/core/toolstack/xl/xl-driver.js';
import { stateOf } from '../../src/core/toolstack/xl/xl-migrate.js';
import { fakeDom0 } from '../support/fake-xl/dom0.js';

describe("xl list's state flags", () => {
  it('reads ------ (runnable, waiting for a CPU) as running, as r----- and -b----', () => {
    expect(stateOf('------')).toBe('running');
    expect(stateOf('r-----')).toBe('running');
    expect(stateOf('-b----')).toBe('running');
    expect(stateOf('--p---')).toBe('paused');
    expect(stateOf('---s--')).toBe('suspended');
    expect(stateOf('----c-')).toBe('crashed');
    expect(stateOf('-----d')).toBe('unknown'); // dying: not a domain to migrate
  });

  it('migrate-test finds a domain the (fake) xl lists as ------ and takes it as running', async () => {
    const { state, env, cfg, xl } = fakeDom0({ prefix: 'fbxen-xl-state-', guest: '@hang\n', vcpus: 1, memoryMiB: 256, create: false });
    writeFileSync(join(state, 'scenario.json'), JSON.stringify({ runnable: true }));
    expect(xl('create', '-q', cfg).status).toBe(0);
    expect(xl('list', 'fbxen-g').stdout).toMatch(/fbxen-g\s+1\s+\d+\s+1\s+------/);
    const driver = new XlDriver({ runner: createExecaRunner(), env, backTo: 'here' });
    expect(await driver.migrationRoute('fbxen-g', 'save-restore', undefined)).toMatchObject({ origin: 'localhost' });
    expect(await driver.locate('fbxen-g')).toMatchObject({ id: '1', state: 'running' });
  });
});
