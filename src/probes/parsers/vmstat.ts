/**
 * `vmstat -ia` (all interrupt counters, zero rows included): a header, `name  total  rate` rows, and a
 * `Total` row. Names are `irqN: <source>` (x86 interrupt sources, Xen event channels included) or
 * `cpuN:<what>` (LAPIC timer). Columns are aligned with spaces; names may contain spaces.
 */
import { z } from 'zod';

export const InterruptRowSchema = z.object({
  /** the whole name column, e.g. "irq768: xen_et0:c0" or "cpu0:timer" */
  name: z.string(),
  irq: z.number().int().nonnegative().nullable(),
  /** the handler part: "xen_et0:c0", "cpu0:timer", "xbd0" */
  source: z.string(),
  total: z.number().nonnegative(),
});
export const VmstatSchema = z.object({
  rows: z.array(InterruptRowSchema),
  /** the listing reached its `Total` row: a row missing from it is absent, not cut off */
  complete: z.boolean(),
});
export type InterruptRow = z.infer<typeof InterruptRowSchema>;
export type Vmstat = z.infer<typeof VmstatSchema>;

const ROW = /^(\S.*?)\s+(\d+)\s+(\d+)\s*$/;

export function parseVmstat(text: string): Vmstat {
  const rows: InterruptRow[] = [];
  let complete = false;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const m = ROW.exec(line);
    if (!m) continue;
    const name = m[1]!.trim();
    if (name === 'Total') complete = true;
    if (name === 'Total' || name === 'interrupt') continue;
    const total = Number(m[2]);
    if (!Number.isSafeInteger(total)) continue;
    const irqm = /^irq(\d+):\s*(.*)$/.exec(name);
    rows.push({ name, irq: irqm ? Number(irqm[1]) : null, source: irqm ? irqm[2]! : name, total });
  }
  return VmstatSchema.parse({ rows, complete });
}

/** Rows whose source matches, keyed by source (the first row wins when names repeat). */
export function rowsBySource(v: Vmstat, re: RegExp): Map<string, InterruptRow> {
  const out = new Map<string, InterruptRow>();
  for (const r of v.rows) if (re.test(r.source) && !out.has(r.source)) out.set(r.source, r);
  return out;
}
