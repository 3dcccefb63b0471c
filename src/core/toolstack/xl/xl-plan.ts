/** The xl driver's --dry-run lines: the exact commands, in order, with what each waits for. */
import { formatCommand } from '../../exec/runner.js';
import type { GuestSpec, PlanStep } from '../types.js';
import { checkpointFile } from './xl-migrate.js';
import type { XlCommands } from './xl-commands.js';
import { renderXlConfig, type XlGuestSpec } from './xl-config.js';
import { OVERHEAD_MIB } from './xl-preflight.js';

export interface XlPlanContext {
  /** the guest of a step as the driver renders it (validated, uuid and mac filled) */
  spec: (guest: GuestSpec) => XlGuestSpec;
  /** the name the peer dom0 uses to migrate back here */
  backTo: string;
  /** where xl reads the config of a run directory */
  configPath: (runDir: string) => string;
}

export function xlPlan(xl: XlCommands, step: PlanStep, ctx: XlPlanContext): string[] {
  const spec = (s: { guest: GuestSpec }) => ctx.spec(s.guest);
  // The real place, even when a test points the check elsewhere (FBXEN_SYS_CLASS_NET): the plan is for a dom0.
  const sysClassNet = '/sys/class/net';
  const cmd = (args: string[]) => xl.command(args);
  switch (step.step) {
    case 'preflight': {
      const s = spec(step);
      return [
        `preflight: ${cmd(['info'])}   (dom0 reachable; free_memory, plus what autoballoon may take from dom0, >= ${s.memoryMiB + OVERHEAD_MIB} MiB)`,
        `preflight: bridge ${s.bridge} exists (${sysClassNet}/${s.bridge}/bridge)`,
        `preflight: ${cmd(['domid', s.name])}   (must fail: fbxen never reuses a domain it did not create)`,
      ];
    }
    case 'config':
      return renderXlConfig(spec(step)).trimEnd().split('\n');
    case 'stage':
      return xl.host === 'localhost' ? [] : [`copy ${[step.files.image, step.files.cd, step.files.kernel, step.files.ramdisk].filter((f) => f !== undefined).join(', ')} to ${xl.host}`];
    case 'create': {
      const s = spec(step);
      return [
        `${cmd(['create', '-c', ctx.configPath(step.runDir)])}   (created paused, console attached, then unpaused; console → ${step.consoleLog})`,
        `${cmd(['domid', s.name])}, then ${cmd(['list', '-l', 'DOMID'])}   (the domid this run created, confirmed by uuid ${s.uuid})`,
      ];
    }
    case 'stop': {
      const s = spec(step);
      return step.keep
        ? [`--keep: leave domain ${s.name} running (destroy it later: ${cmd(['destroy', s.name])})`]
        : [`${cmd(['shutdown', '-w', 'DOMID'])}   (up to ${step.graceSec} s), then ${cmd(['destroy', 'DOMID'])}`];
    }
    case 'migrate-preflight': {
      const remote = (step.to ?? 'localhost') !== 'localhost';
      const steps = [
        `${cmd(['info'])}   (a hypervisor answers; else stop, exit 4)`,
        `${cmd(['help'])}   (lists \`${step.mode === 'live' ? 'migrate' : 'save'}\`; else skip)`,
        `${cmd(['list'])}   (${step.domain} present and running; else stop, exit 4)`,
      ];
      if (step.mode === 'live' && remote) steps.push(`${xl.on(step.to!).command(['info'])}   (destination reachable; else stop, exit 4)`);
      return steps;
    }
    case 'migrate': {
      const to = step.to ?? 'localhost';
      const remote = to !== 'localhost' && step.mode === 'live';
      if (step.mode === 'save-restore') {
        const file = checkpointFile(step.checkpointDir, step.iteration);
        return [
          `${cmd(['save', 'DOMID', file])}   (save)`,
          `${cmd(['restore', file])}   (restore)`,
          `remove ${file} once restored (kept when the restore fails)`,
          `${cmd(['list'])}   (where the domain is now; the new domid)`,
        ];
      }
      // xl-migrate.ts removeHalfReceived: what a failed live migration left at the receiver, and only that
      const incoming = `${step.domain}--incoming`;
      const before = (list: string) => `${list}   (on the receiver: a ${incoming} already there is not this run's, and is never touched)`;
      const onFailure = (destroy: string) => `on failure, with ${step.domain} running again at the sender: ${destroy}   (the paused ${incoming} this migration left; never the source)`;
      if (!remote) return [before(cmd(['list'])), `${cmd(['migrate', '-s', '', 'DOMID', 'xl migrate-receive'])}   (migrate)`, onFailure(cmd(['destroy', 'INCOMING-DOMID'])), `${cmd(['list'])}   (where the domain is now; the new domid)`];
      const there = step.iteration % 2 === 1;
      const from = there ? xl : xl.on(to);
      const receiver = there ? xl.on(to) : xl;
      const argv = from.argv(['migrate', there ? 'DOMID' : step.domain, there ? to : ctx.backTo]);
      return [
        before(receiver.command(['list'])),
        `${formatCommand(...argv)}   (migrate: ${there ? 'there' : 'and back'})`,
        onFailure(receiver.command(['destroy', 'INCOMING-DOMID'])),
        `${cmd(['list'])} and ${xl.on(to).command(['list'])}   (where the domain is now; the new domid)`,
      ];
    }
    case 'attach-console':
      return [`reattach the console to the new domid (serial for HVM, the PV console for PVH: the type in xl list -l)${(step.to ?? 'localhost') !== 'localhost' && step.mode === 'live' ? ' (when the domain is on this host)' : ''}`];
  }
}
