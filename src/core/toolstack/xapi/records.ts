/**
 * zod schemas for the parts of XAPI records fbxen reads. Loose on purpose: records carry many more
 * fields, and XAPI versions add some; ints may come as strings (XML-RPC) or numbers (JSON-RPC).
 * A record that lacks what fbxen needs is a clear error, not an undefined deep in the flow.
 */
import { z } from 'zod';
import { ToolstackError } from '../../errors.js';
import type { XapiValue } from './xmlrpc.js';

const Ref = z.string().regex(/^OpaqueRef:/, 'an OpaqueRef');

/**
 * The VM platform flags fbxen gives a FreeBSD HVM guest, on VMs it creates over XAPI and in XVAs alike:
 * ACPI, APIC, PAE, NX, HPET, no Viridian (Hyper-V enlightenments confuse FreeBSD's Xen detection), qemu-upstream.
 */
export const HVM_PLATFORM: Readonly<Record<string, string>> = {
  acpi: '1',
  apic: 'true',
  pae: 'true',
  nx: 'true',
  hpet: 'true',
  viridian: 'false',
  timeoffset: '0',
  'device-model': 'qemu-upstream-compat',
};

export const SrRecord = z.object({ uuid: z.string(), name_label: z.string(), type: z.string(), content_type: z.string(), shared: z.boolean() }).loose();
export const NetworkRecord = z.object({ uuid: z.string(), name_label: z.string(), bridge: z.string() }).loose();
export const HostRecord = z.object({ uuid: z.string(), name_label: z.string(), address: z.string() }).loose();
export const VbdRecord = z.object({ type: z.enum(['Disk', 'CD', 'Floppy']), VDI: z.string(), userdevice: z.string() }).loose();
export const RefList = z.array(Ref);
export const RecordMap = <T extends z.ZodType>(schema: T) => z.record(Ref, schema);

/** Parses an answer of METHOD with SCHEMA, or says which field was not what XAPI documents. */
export function expectShape<T extends z.ZodType>(schema: T, value: XapiValue, method: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issues = r.error.issues
    .slice(0, 3)
    .map((i) => `${i.path.join('.') || '(answer)'}: ${i.message}`)
    .join('; ');
  throw new ToolstackError(`XAPI ${method} answered in an unexpected shape (${issues})`, { hint: 'the pool runs an xapi fbxen does not know; report this with the pool version (xe host-param-get param-name=software-version)' });
}
