/**
 * The VM and VDIs one run created, so that cleanup (failure, SIGINT, the end of a run without --keep)
 * removes exactly those and nothing else.
 */
import { NULL_REF, str, type Api } from './api.js';
import { XapiError } from './errors.js';
import { expectShape, RefList, VbdRecord } from './records.js';

/**
 * Removal order matters: the VM first (VM.destroy leaves its VDIs, and a VDI with a VBD cannot go), then
 * the VDIs, each attempted even when another fails.
 */
export class CreatedObjects {
  vm: string | undefined;
  /** VDIs fbxen created itself (disk upload, CD). */
  readonly vdis: string[] = [];
  /** True when the VM came from an XVA: its disks were created by the import and go with it. */
  imported = false;

  private queue: Promise<unknown> = Promise.resolve();
  /** VMs this run created that a removal already took (a second cleanup must not count them as foreign). */
  private readonly removed = new Set<string>();

  /** REF is (or was, before a removal took it) the VM this run created. */
  owns(ref: string): boolean {
    return this.vm === ref || this.removed.has(ref);
  }

  /**
   * Removes what is recorded now. Calls are serialised: a SIGINT cleanup and the failure path may both
   * ask, and the second removes whatever the flow created after the first started.
   */
  remove(api: Pick<Api, 'call'>): Promise<string[]> {
    const next = this.queue.then(() => this.removeNow(api));
    this.queue = next.catch(() => undefined);
    return next;
  }

  private async removeNow(api: Pick<Api, 'call'>): Promise<string[]> {
    const failures: string[] = [];
    const attempt = async (label: string, fn: () => Promise<unknown>) => {
      try {
        await fn();
      } catch (err) {
        failures.push(`${label}: ${err instanceof Error ? err.message : String(err)}`);
      }
    };
    const vm = this.vm;
    this.vm = undefined;
    if (vm) this.removed.add(vm);
    if (vm) {
      const importedDisks: string[] = [];
      await attempt(`remove VM ${vm}`, async () => {
        let state: string;
        try {
          state = str(await api.call('VM.get_power_state', vm));
        } catch (err) {
          if (err instanceof XapiError && err.code === 'HANDLE_INVALID') return; // already gone
          throw err;
        }
        if (state !== 'Halted') {
          try {
            await api.call('VM.hard_shutdown', vm);
          } catch (err) {
            if (!(err instanceof XapiError && err.code === 'VM_BAD_POWER_STATE')) throw err; // raced with the guest powering off
          }
        }
        if (this.imported) {
          for (const vbd of expectShape(RefList, await api.call('VM.get_VBDs', vm), 'VM.get_VBDs')) {
            const r = expectShape(VbdRecord, await api.call('VBD.get_record', vbd), 'VBD.get_record');
            const vdi = str(r['VDI']);
            if (r['type'] === 'Disk' && vdi !== NULL_REF && !this.vdis.includes(vdi)) importedDisks.push(vdi);
          }
        }
        await api.call('VM.destroy', vm);
      });
      for (const vdi of importedDisks) await attempt(`destroy VDI ${vdi}`, () => api.call('VDI.destroy', vdi));
    }
    while (this.vdis.length) {
      const vdi = this.vdis.pop()!;
      await attempt(`destroy VDI ${vdi}`, () => api.call('VDI.destroy', vdi));
    }
    return failures;
  }
}
