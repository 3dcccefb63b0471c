/**
 * `sysctl name...` output: `name: value` lines; a value may continue on following lines (kern.boottime
 * on some releases, multi-line strings). `sysctl: unknown oid 'x'` lines record OIDs this kernel lacks.
 */
import { z } from 'zod';

export const SysctlSchema = z.object({
  values: z.record(z.string(), z.string()),
  unknown: z.array(z.string()),
});
export type Sysctl = z.infer<typeof SysctlSchema>;

const LINE = /^([a-z][a-z0-9_]*(?:\.[A-Za-z0-9_%.-]+)+): ?(.*)$/;
const UNKNOWN = /^sysctl: unknown oid '([^']+)'/;

export function parseSysctl(text: string): Sysctl {
  const values: Record<string, string> = Object.create(null) as Record<string, string>;
  const unknown: string[] = [];
  let last: string | undefined;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    const u = UNKNOWN.exec(line);
    if (u) {
      unknown.push(u[1]!);
      last = undefined;
      continue;
    }
    const m = LINE.exec(line);
    if (m) {
      values[m[1]!] = m[2]!;
      last = m[1]!;
    } else if (last !== undefined && line !== '') {
      values[last] = `${values[last]}\n${line}`;
    }
  }
  return SysctlSchema.parse({ values: { ...values }, unknown });
}

/** The disks blkfront attached, from `dev.xbd.N.*` keys. */
export function xbdUnits(s: Sysctl): number[] {
  const units = new Set<number>();
  for (const k of Object.keys(s.values)) {
    const m = /^dev\.xbd\.(\d+)\./.exec(k);
    if (m) units.add(Number(m[1]));
  }
  return [...units].sort((a, b) => a - b);
}
