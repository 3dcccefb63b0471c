/**
 * `xl info` output as key/value pairs (lines "key   : value"), and the summary `fbxen lab status`
 * shows. The text comes from the VM over ssh: bounded, and unknown lines ignored.
 */
export interface XlInfoSummary {
  xenVersion: string | null;
  nrCpus: number | null;
  totalMemoryMiB: number | null;
  freeMemoryMiB: number | null;
  virtCaps: string | null;
  xenCaps: string | null;
}

export const XL_INFO_MAX_BYTES = 64 * 1024;

export function parseXlInfo(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.slice(0, XL_INFO_MAX_BYTES).split('\n')) {
    const m = /^([a-z_][a-z0-9_]{0,63})\s*:\s?(.*)$/.exec(line.replace(/\r$/, ''));
    if (m && !(m[1]! in out)) out[m[1]!] = m[2]!.trim().slice(0, 1024);
  }
  return out;
}

export function summarizeXlInfo(info: Record<string, string>): XlInfoSummary {
  const int = (k: string) => {
    const v = info[k];
    return v !== undefined && /^\d{1,15}$/.test(v) ? Number(v) : null;
  };
  const version = info.xen_major !== undefined && info.xen_minor !== undefined ? `${info.xen_major}.${info.xen_minor}${info.xen_extra ?? ''}` : (info.xen_version ?? null);
  return {
    xenVersion: version,
    nrCpus: int('nr_cpus'),
    totalMemoryMiB: int('total_memory'),
    freeMemoryMiB: int('free_memory'),
    virtCaps: info.virt_caps ?? null,
    xenCaps: info.xen_caps ?? null,
  };
}
