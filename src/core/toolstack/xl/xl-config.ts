/**
 * The xl.cfg renderer. Every user value is validated against a strict whitelist *before* rendering: xl's
 * config lexer has no working numeric escapes, its disk-spec lexer splits on commas, and its vif parser
 * splits on commas and `=`, so a value that needs escaping is refused with a clear error instead of being
 * escaped into something xl might read differently (see docs/boot-xl.md and the design notes in xl.md).
 */
import { createHash } from 'node:crypto';
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../../errors.js';
import { NAME_PATTERN } from '../../util/names.js';

/** Domain names: what `xl` and our artifacts directory can both hold without quoting. */
export const DOMAIN_NAME_PATTERN = NAME_PATTERN;
/** Linux interface names (IFNAMSIZ 16 incl. NUL); no comma or `=` that would split a vif spec. */
export const BRIDGE_PATTERN = /^[A-Za-z0-9_.-]{1,15}$/;
/** Absolute paths made of characters that need no escape in xl.cfg and cannot end a disk-spec field. */
export const XL_PATH_PATTERN = /^\/[A-Za-z0-9._+@%~\/ -]*[A-Za-z0-9._+@%~\/-]$/;

export const MIN_MEMORY_MIB = 128;
export const MAX_MEMORY_MIB = 1024 * 1024;
export const MAX_VCPUS = 128;

const NAME_CHAR = /^[A-Za-z0-9._-]$/;
const BRIDGE_CHAR = NAME_CHAR;
const PATH_CHAR = /^[A-Za-z0-9._+@%~\/ -]$/;

/** Names the first character of `value` that `allowedChar` refuses, and why xl cares, for the error. */
export function describeBadCharacter(value: string, allowedChar: RegExp): string | undefined {
  for (const ch of value) {
    if (allowedChar.test(ch)) continue;
    const code = ch.codePointAt(0)!;
    const named: Record<string, string> = { '"': 'a double quote', "'": 'a single quote', '\\': 'a backslash', ',': 'a comma', '=': 'an equals sign', ' ': 'a space', '\n': 'a newline (U+000a)', '\r': 'a carriage return (U+000d)', '\t': 'a tab (U+0009)' };
    const shown =
      named[ch] ??
      (code < 0x20 || code === 0x7f
        ? `control character U+${code.toString(16).padStart(4, '0')}`
        : code > 0x7e
          ? `non-ASCII character "${ch}"`
          : `"${ch}"`);
    if (ch === '"' || ch === "'" || ch === '\\') return `${shown}: xl.cfg would need an escape`;
    if (ch === ',') return `${shown}: xl splits disk and vif specs on commas`;
    if (ch === '=') return `${shown}: xl reads "=" as a key separator in disk and vif specs`;
    if (ch === '\n' || ch === '\r') return `${shown}: xl.cfg strings cannot hold a line break`;
    return shown;
  }
  return undefined;
}

function refineAgainst(pattern: RegExp, allowedChar: RegExp, what: string, allowedText: string) {
  return (value: string, ctx: z.RefinementCtx) => {
    if (pattern.test(value)) return;
    const bad = describeBadCharacter(value, allowedChar);
    ctx.addIssue({
      code: 'custom',
      message: `${what} ${JSON.stringify(value)} is not allowed${bad ? ` (${bad})` : ''}; use ${allowedText}`,
    });
  };
}

export const DomainNameSchema = z
  .string()
  .superRefine(refineAgainst(DOMAIN_NAME_PATTERN, NAME_CHAR, 'domain name', '1-64 of A-Z a-z 0-9 . _ -, starting with a letter or digit'))
  .refine((s) => !/^\d+$/.test(s), { message: 'a domain name made only of digits would be read by xl as a domain id' })
  .refine((s) => s !== 'Domain-0', { message: 'Domain-0 is the control domain' })
  .refine((s) => !s.includes('--'), { message: 'xl uses "--" in names for migration (NAME--incoming, NAME--migratedaway)' });

export const BridgeSchema = z
  .string()
  .superRefine(refineAgainst(BRIDGE_PATTERN, BRIDGE_CHAR, 'bridge', '1-15 of A-Z a-z 0-9 _ . - (a Linux interface name)'));

export const XlPathSchema = z
  .string()
  .refine((p) => isAbsolute(p), { message: 'must be an absolute path (xl resolves relative paths against its own cwd)' })
  .superRefine(refineAgainst(XL_PATH_PATTERN, PATH_CHAR, 'path', 'A-Z a-z 0-9 and . _ + @ % ~ / - or an inner space (rename the file or use a symlink)'));

export const MacSchema = z.string().regex(/^00:16:3e:[0-7][0-9a-f]:[0-9a-f]{2}:[0-9a-f]{2}$/, 'a MAC in the Xen OUI, 00:16:3e:00:00:00 to 00:16:3e:7f:ff:ff, lower case');
export const UuidSchema = z.string().regex(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/, 'a lower-case UUID');

export const CdromSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('iso'), path: XlPathSchema }),
  z.object({ kind: z.literal('empty') }),
]);

export const XlGuestSpecSchema = z.object({
  name: DomainNameSchema,
  uuid: UuidSchema,
  mac: MacSchema,
  arch: z.enum(['amd64', 'i386']).optional(),
  release: z.string().regex(/^[A-Za-z0-9._-]{1,40}$/).optional(),
  vcpus: z.number().int().min(1).max(MAX_VCPUS),
  memoryMiB: z.number().int().min(MIN_MEMORY_MIB).max(MAX_MEMORY_MIB),
  image: z.object({ path: XlPathSchema, format: z.enum(['raw', 'qcow2']) }),
  cdrom: CdromSchema,
  bridge: BridgeSchema,
});
export type XlGuestSpec = z.infer<typeof XlGuestSpecSchema>;

/** A name-derived UUID (RFC 9562 version 8, "custom"), so the same name renders the same config. */
export function uuidForName(name: string): string {
  const h = createHash('sha256').update(`fbxen-uuid:${name}`).digest();
  h[6] = (h[6]! & 0x0f) | 0x80;
  h[8] = (h[8]! & 0x3f) | 0x80;
  const hex = h.subarray(0, 16).toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}

/** A name-derived MAC in the Xen OUI; the top bit of the fourth byte is cleared as libxl does for its own. */
export function macForName(name: string): string {
  const h = createHash('sha256').update(`fbxen-mac:${name}`).digest();
  const bytes = [0x00, 0x16, 0x3e, h[0]! & 0x7f, h[1]!, h[2]!];
  return bytes.map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** Validates a spec; every problem is listed with its key. */
export function validateXlGuestSpec(input: unknown): XlGuestSpec {
  const parsed = XlGuestSpecSchema.safeParse(input);
  if (parsed.success) return parsed.data;
  throw new ConfigError(
    'invalid xl guest settings',
    parsed.error.issues.map((i) => `${i.path.join('.') || '(spec)'}: ${i.message}`),
    { hint: 'fix the values named above; fbxen refuses values it would have to escape for xl' },
  );
}

/** Defence in depth: a string reaching the renderer must need no escape at all. */
function quote(value: string): string {
  if (!/^[\x20-\x7e]*$/.test(value) || /["'\\]/.test(value)) {
    throw new Error(`internal: unvalidated value reached the xl.cfg renderer: ${JSON.stringify(value)}`);
  }
  return `"${value}"`;
}

function decimal(n: number): string {
  if (!Number.isSafeInteger(n) || n < 0) throw new Error(`internal: ${n} is not a plain non-negative integer`);
  return String(n);
}

/** The disk specs, `target=` always last: it takes the rest of the spec, commas included. */
export function diskSpecs(spec: XlGuestSpec): string[] {
  const disks = [`format=${spec.image.format}, vdev=xvda, access=rw, target=${spec.image.path}`];
  if (spec.cdrom.kind === 'iso') disks.push(`format=raw, vdev=hdc, access=ro, devtype=cdrom, target=${spec.cdrom.path}`);
  else disks.push('vdev=hdc, access=ro, devtype=cdrom');
  return disks;
}

export function vifSpec(spec: XlGuestSpec): string {
  return `mac=${spec.mac},bridge=${spec.bridge},type=vif`;
}

/** Renders xl.cfg: lower-case keys, plain decimals, quoted strings without escapes, LF, final newline. */
export function renderXlConfig(input: XlGuestSpec): string {
  const spec = validateXlGuestSpec(input);
  const what = [spec.release ? `FreeBSD ${spec.release}` : 'FreeBSD', spec.arch].filter(Boolean).join(' ');
  const lines = [
    `# Generated by fbxen: ${what} HVM guest with Xen PV drivers (xbd disk, xn NIC).`,
    '# The fbxen CD (or an empty drive) is the emulated IDE CD hdc; the serial console is a pty that',
    '# fbxen captures with `xl create -c`, because serial="file:..." cannot be attached to.',
    `name = ${quote(spec.name)}`,
    `uuid = ${quote(spec.uuid)}`,
    'type = "hvm"',
    `memory = ${decimal(spec.memoryMiB)}`,
    `maxmem = ${decimal(spec.memoryMiB)}`,
    `vcpus = ${decimal(spec.vcpus)}`,
    `maxvcpus = ${decimal(spec.vcpus)}`,
    'xen_platform_pci = 1',
    'device_model_version = "qemu-xen"',
    'boot = "c"',
    'disk = [',
    ...diskSpecs(spec).map((d) => `    ${quote(d)},`),
    ']',
    `vif = [ ${quote(vifSpec(spec))} ]`,
    'serial = "pty"',
    'vnc = 0',
    'nographic = 1',
    'on_poweroff = "destroy"',
    // A reboot would come back as a new domid that fbxen never learned about: end the domain instead.
    'on_reboot = "destroy"',
    'on_crash = "preserve"',
  ];
  return `${lines.join('\n')}\n`;
}
