/**
 * The XAPI driver's --dry-run plan: the driver's own code runs against the call recorder (api.ts), one
 * recorder per plan so that symbolic refs (<VM#9>) count on across steps as the calls of a run would.
 */
import { basename } from 'node:path';
import type { PlanStep } from '../types.js';
import { PlanRecorder } from './api.js';
import { CreatedObjects } from './created.js';
import { planMigrateIteration, planMigratePreflight } from './migration.js';
import { choosePool, type PoolChoice } from './pool.js';
import { loginPlanLine } from './session.js';
import { createAndStartVm, vmBuild } from './vm-create.js';

export class XapiPlan {
  private readonly rec = new PlanRecorder();
  /** the symbolic pool of the plan's preflight (never the pool of a run) */
  private pool: PoolChoice | undefined;

  constructor(private readonly o: { user?: string | undefined; run?: string | undefined; fbxenCd?: boolean | undefined; cwd?: string | undefined; timeoutMs?: number | undefined; destSr?: string | undefined }) {}

  async lines(step: PlanStep): Promise<string[]> {
    const rec = this.rec;
    const from = rec.lines.length;
    switch (step.step) {
      case 'preflight':
        rec.lines.push(loginPlanLine(this.o.user ?? '<user>'));
        rec.note('Find the pool, the SR and the network');
        this.pool = await choosePool(rec, { sr: step.guest.storage, network: step.guest.network });
        break;
      case 'create': {
        const pool = this.pool ?? (await choosePool(new PlanRecorder(), { sr: step.guest.storage, network: step.guest.network }));
        const noted = <T>(title: string, fn: () => Promise<T>) => (rec.note(title), fn());
        const build = vmBuild(step.guest, { ...this.o, run: this.o.run ?? basename(step.runDir) }, 'tcp:<this host>:<port>', pool);
        await createAndStartVm(build, { api: rec, created: new CreatedObjects(), step: noted, warn: () => undefined });
        break;
      }
      case 'stop':
        rec.note(step.keep ? 'keep the VM running (--keep)' : `then Async.VM.clean_shutdown, up to ${step.graceSec} s; then remove what this run created: VM.hard_shutdown if it is still running, VM.destroy, VDI.destroy for each VDI fbxen created`);
        rec.lines.push('session.logout(<session>)');
        break;
      case 'migrate-preflight':
        return planMigratePreflight(step.domain, step.mode, step.to, this.o.destSr);
      case 'migrate':
        return planMigrateIteration(step.iteration, step.mode, step.to, this.o.destSr);
      case 'attach-console':
        return [`VM.get_platform ${step.domain}   (hvm_serial tcp:HOST:PORT: listen there; only the pool's hosts may connect; QEMU reconnects after each migration)`];
      case 'config':
        return [`(the VM record: pool, master, host, SR, network, VM uuid and nonce channel, written once ${step.guest.name} runs)`];
      case 'stage':
        return [];
    }
    return rec.lines.slice(from);
  }
}
