/** Parsers for what `xl` prints; every one validates with zod, since the output is external input. */
import { z } from 'zod';
import { ToolstackError } from '../../errors.js';

/** `xl info`: `key                    : value` lines. */
export function parseXlInfo(text: string): Record<string, string> {
  const out: Record<string, string> = Object.create(null) as Record<string, string>; // a key like __proto__ stays data
  for (const line of text.split('\n')) {
    const m = /^([a-z_][a-z0-9_]*)\s*:\s?(.*)$/.exec(line);
    if (m) out[m[1]!] = m[2]!.trim();
  }
  return out;
}

export const XlHostInfoSchema = z.object({
  host: z.string().min(1),
  xen_version: z.string().min(1),
  free_memory: z.coerce.number().int().nonnegative(),
  total_memory: z.coerce.number().int().nonnegative(),
  nr_cpus: z.coerce.number().int().positive(),
  /** The hypervisor command line: `dom0_mem=` there decides whether xl's autoballoon="auto" is on. */
  xen_commandline: z.string().optional(),
});
export type XlHostInfo = z.infer<typeof XlHostInfoSchema>;

export function parseXlHostInfo(text: string): XlHostInfo {
  const parsed = XlHostInfoSchema.safeParse(parseXlInfo(text));
  if (!parsed.success) {
    throw new ToolstackError(`\`xl info\` printed something fbxen cannot read: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`, {
      hint: 'run `xl info` by hand; fbxen needs host, xen_version, free_memory, total_memory and nr_cpus',
    });
  }
  return parsed.data;
}

const DiskSchema = z.looseObject({
  vdev: z.string(),
  pdev_path: z.string().optional(),
  format: z.string().optional(),
  is_cdrom: z.number().optional(),
  readwrite: z.number().optional(),
});

export const XlDomainDetailSchema = z.object({
  domid: z.number().int().nonnegative(),
  config: z.looseObject({
    c_info: z.looseObject({ name: z.string(), uuid: z.string().optional(), type: z.string().optional() }),
    b_info: z.looseObject({}).optional(),
    disks: z.array(DiskSchema).optional(),
    nics: z.array(z.looseObject({ mac: z.string().optional(), bridge: z.string().optional() })).optional(),
  }),
});
export type XlDomainDetail = z.infer<typeof XlDomainDetailSchema>;

/** `xl list -l`: a JSON array of `{ domid, config }` (Domain-0 usually absent: it has no stored config). */
export function parseXlListLong(text: string): XlDomainDetail[] {
  let doc: unknown;
  try {
    doc = text.trim() === '' ? [] : JSON.parse(text);
  } catch (err) {
    throw new ToolstackError(`\`xl list -l\` did not print JSON: ${(err as Error).message}`, {
      hint: 'fbxen needs the JSON output format; check output_format in /etc/xen/xl.conf (must not be "sxp")',
    });
  }
  const parsed = z.array(XlDomainDetailSchema).safeParse(doc);
  if (!parsed.success) {
    throw new ToolstackError(`\`xl list -l\` printed JSON of an unexpected shape: ${parsed.error.issues[0]?.message ?? ''}`, {
      hint: 'this xl version may be too old or too new for fbxen; report it with the output of `xl list -l`',
    });
  }
  return parsed.data;
}

export interface XlListRow {
  name: string;
  domid: number;
  memMiB: number;
  vcpus: number;
  state: string;
}

/** `xl list`: the `Name ID Mem VCPUs State Time(s)` table. */
export function parseXlList(text: string): XlListRow[] {
  const rows: XlListRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const m = /^(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([-rbpscd]{6})\s/.exec(line);
    if (m) rows.push({ name: m[1]!, domid: Number(m[2]), memMiB: Number(m[3]), vcpus: Number(m[4]), state: m[5]! });
  }
  return rows;
}
