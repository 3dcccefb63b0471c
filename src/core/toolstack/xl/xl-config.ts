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

/**
 * The PVH kernel command line. FreeBSD's PVH entry (sys/x86/xen/pv.c, xen_pvh_parse_preload_data) gives
 * start_info's cmdline to boot_parse_cmdline_delim (sys/kern/subr_boot.c): strsep on "," (12.x-13.x) or
 * ", \t\n" (14.0+, c4a4011c), empty tokens skipped, "-..." read as boot flags, otherwise split at the first
 * "=" into a kenv entry (a bare KEY becomes KEY=1). There is no quoting or escape, so fbxen joins KEY=VALUE
 * with "," and refuses anything either splitter would cut or misread. See docs/pvh.md §2.
 */
export const PVH_CMDLINE_MAX = 2048; // libxenguest sets no limit; the whole kenv must fit one static page
export const KENV_NAME_MAX = 128; // KENV_MNAMELEN: init_dynamic_kenv drops longer entries
export const KENV_VALUE_MAX = 128; // KENV_MVALLEN
/** The PVHv2 entry note came with f2577f25 (head r336474, 2018-07-19); 12.0-RELEASE is the first release. */
export const PVH_FIRST_RELEASE = '12.0-RELEASE';
const PVH_FIRST_MAJOR = 12;
/** What the root file system is mounted from: fbxen's fstab names the root by its GPT label too. */
export const PVH_ROOT_MOUNTFROM = 'ufs:/dev/gpt/rootfs';
const MAX_LISTED_PROBLEMS = 20;
const KENV_KEY_PATTERN = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/;
const KENV_KEY_CHAR = /^[A-Za-z0-9_.-]$/;
const KENV_VALUE_PATTERN = /^[\x21-\x7e]*$/;
const KENV_VALUE_BAD = /[,"'\\]/;

/** Problems with one KEY=VALUE for a PVH cmdline, empty when FreeBSD would read exactly that entry. */
export function kenvEntryProblems(key: string, value: string): string[] {
  const problems: string[] = [];
  // Messages quote at most 40 characters of what was given: a hostile value must not become the error.
  const shown = key.length > 40 ? `${JSON.stringify(key.slice(0, 40))}...` : JSON.stringify(key);
  if (key === '') problems.push('an empty key');
  else if (key.startsWith('-')) problems.push(`key ${shown} starts with "-": FreeBSD reads it as boot flags, not a kenv entry`);
  else if (!KENV_KEY_PATTERN.test(key)) {
    const bad = describeBadCharacter(key, KENV_KEY_CHAR);
    problems.push(`key ${shown} is not allowed${bad ? ` (${bad})` : ''}; use A-Z a-z 0-9 _ . -`);
  }
  if (key.length > KENV_NAME_MAX) problems.push(`key ${shown} is ${key.length} characters; FreeBSD keeps kenv names up to ${KENV_NAME_MAX}`);
  const badValue = [...value].find((ch) => !KENV_VALUE_PATTERN.test(ch) || KENV_VALUE_BAD.test(ch));
  if (badValue !== undefined) {
    const why =
      badValue === ','
        ? 'a comma: FreeBSD splits the PVH cmdline on commas and has no escape'
        : badValue === ' ' || badValue === '\t' || badValue === '\n'
          ? `${describeBadCharacter(badValue, /^$/)}: FreeBSD 14.0+ splits the PVH cmdline on blanks too`
          : `${describeBadCharacter(badValue, /^$/)}`;
    problems.push(`value of ${shown} holds ${why}`);
  }
  if (value.length > KENV_VALUE_MAX) problems.push(`value of ${shown} is ${value.length} characters; FreeBSD keeps kenv values up to ${KENV_VALUE_MAX}`);
  return problems;
}

/** Every reason FreeBSD would not read `entries` back exactly from their comma-joined form. */
export function pvhCmdlineProblems(entries: readonly (readonly [string, string])[]): string[] {
  const problems: string[] = [];
  const seen = new Set<string>();
  for (const [key, value] of entries) {
    problems.push(...kenvEntryProblems(key, value));
    // The static kenv keeps both and getenv finds the first: say which one instead of guessing.
    if (seen.has(key)) problems.push(`key ${key.length > 40 ? `${JSON.stringify(key.slice(0, 40))}...` : JSON.stringify(key)} is given twice`);
    seen.add(key);
  }
  const length = entries.reduce((n, [k, v], i) => n + k.length + 1 + v.length + (i > 0 ? 1 : 0), 0);
  if (length > PVH_CMDLINE_MAX) problems.push(`the cmdline is ${length} bytes; fbxen allows ${PVH_CMDLINE_MAX} (FreeBSD's PVH kenv is one 4 KiB page, acpi.rsdp included)`);
  // One line per problem, but not thousands of them.
  if (problems.length > MAX_LISTED_PROBLEMS) problems.splice(MAX_LISTED_PROBLEMS, problems.length, `and ${problems.length - MAX_LISTED_PROBLEMS} more problems`);
  return problems;
}

/** KEY=VALUE entries joined for xl's cmdline=; throws ConfigError naming every entry FreeBSD would misread. */
export function encodePvhCmdline(entries: readonly (readonly [string, string])[]): string {
  const problems = pvhCmdlineProblems(entries);
  if (problems.length > 0) {
    throw new ConfigError('the PVH kernel environment cannot be passed on the kernel command line', problems, {
      hint: 'give KEY=VALUE with a key of A-Z a-z 0-9 _ . - and a value of printable ASCII without commas, blanks, quotes or backslashes',
    });
  }
  return entries.map(([k, v]) => `${k}=${v}`).join(',');
}

/** One `--kernel-env KEY=VALUE`, split at the first "=" as FreeBSD's boot_parse_arg does. */
export function parseKernelEnvArg(arg: string): [string, string] {
  const eq = arg.indexOf('=');
  if (eq <= 0) {
    throw new ConfigError(`--kernel-env ${JSON.stringify(arg.slice(0, 80))} is not KEY=VALUE`, [], {
      hint: 'give a kernel environment entry such as --kernel-env boot_verbose=YES (a bare KEY would become KEY=1 in the kernel: write KEY=1)',
    });
  }
  return [arg.slice(0, eq), arg.slice(eq + 1)];
}

/**
 * The kernel environment of a PVH boot: fbxen's root file system first, then the user's entries in their
 * order; a user's vfs.root.mountfrom takes the place of fbxen's instead of being a second one.
 */
export function pvhKernelEnv(user: readonly (readonly [string, string])[]): [string, string][] {
  const own = user.find(([k]) => k === 'vfs.root.mountfrom');
  return [own ? [own[0], own[1]] : ['vfs.root.mountfrom', PVH_ROOT_MOUNTFROM], ...user.filter((e) => e !== own).map(([k, v]): [string, string] => [k, v])];
}

export const PvhBootSchema = z.object({
  /** The FreeBSD ELF kernel on the dom0, entered by Xen at its XEN_ELFNOTE_PHYS32_ENTRY. */
  kernel: XlPathSchema,
  /** The kernel environment, in order; vfs.root.mountfrom is required (no loader will find the root). */
  kernelEnv: z.array(z.tuple([z.string(), z.string()])),
  /**
   * TEST-ONLY (core/boot/standin-guest.ts): a Linux stand-in guest instead of FreeBSD, booted with this
   * ramdisk and this cmdline as it is (no kernel environment).
   */
  standin: z.object({ ramdisk: XlPathSchema, cmdline: z.string().max(1024).regex(/^[\x20-\x7e]*$/).refine((s) => !/["'\\]/.test(s), 'no quotes or backslashes'), vif: z.boolean().optional() }).optional(),
});
export type PvhBoot = z.infer<typeof PvhBootSchema>;

export const XlGuestSpecSchema = z.object({
  /** hvm (the default) or pvh: no device model, the kernel entered directly by Xen (Xen 4.10+). */
  type: z.enum(['hvm', 'pvh']).optional(),
  pvh: PvhBootSchema.optional(),
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
}).superRefine((spec, ctx) => {
  if (spec.type !== 'pvh') {
    if (spec.pvh) ctx.addIssue({ code: 'custom', path: ['pvh'], message: 'kernel and kernel environment are for type pvh only (an HVM guest boots through its own loader)' });
    return;
  }
  if (!spec.pvh) ctx.addIssue({ code: 'custom', path: ['pvh'], message: 'type pvh needs the kernel to boot (Xen enters it directly, there is no firmware)' });
  // sys/i386 has no xen-locore.S: no i386 kernel carries the PVH entry note.
  if (spec.arch === 'i386') ctx.addIssue({ code: 'custom', path: ['arch'], message: 'FreeBSD/i386 cannot boot PVH (no XEN_ELFNOTE_PHYS32_ENTRY in any i386 kernel); use type hvm' });
  const major = /^(\d+)\./.exec(spec.release ?? '')?.[1];
  if (major !== undefined && Number(major) < PVH_FIRST_MAJOR) ctx.addIssue({ code: 'custom', path: ['release'], message: `FreeBSD ${spec.release} cannot boot PVH: ${PVH_FIRST_RELEASE} amd64 is the first release with the PVH entry point; use type hvm` });
  if (spec.cdrom.kind === 'empty') ctx.addIssue({ code: 'custom', path: ['cdrom'], message: 'an empty CD drive has no PVH meaning (no emulated IDE; blkfront refuses cdrom vbds)' });
  if (!spec.pvh || spec.pvh.standin) return;
  for (const message of pvhCmdlineProblems(spec.pvh.kernelEnv)) ctx.addIssue({ code: 'custom', path: ['pvh', 'kernelEnv'], message });
  if (!spec.pvh.kernelEnv.some(([k]) => k === 'vfs.root.mountfrom')) {
    ctx.addIssue({ code: 'custom', path: ['pvh', 'kernelEnv'], message: `vfs.root.mountfrom is missing: no loader runs under PVH, so the kernel would stop at the mountroot prompt (fbxen's root is ${PVH_ROOT_MOUNTFROM})` });
  }
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
  // PVH: blkfront drops devtype=cdrom vbds (xbd_probe), so the ISO is a read-only PV disk, xbd1 in the guest.
  if (spec.type === 'pvh') {
    if (spec.cdrom.kind !== 'iso') throw new Error('internal: a PVH spec without the fbxen ISO passed validation');
    disks.push(`format=raw, vdev=xvdb, access=ro, devtype=disk, target=${spec.cdrom.path}`);
    return disks;
  }
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
  if (spec.type === 'pvh') return renderPvh(spec, what);
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

/**
 * PVH: no device model, so none of the HVM-only keys (serial, boot, vnc, xen_platform_pci, ...: xl parses
 * them only for type hvm). Xen enters the kernel's PVH entry point; the kernel environment the loader would
 * have set comes from cmdline= alone (never ramdisk=: FreeBSD reads module 0 as loader metadata and crashes).
 */
function renderPvh(spec: XlGuestSpec, what: string): string {
  const pvh = spec.pvh!;
  if (pvh.standin) return renderStandin(spec, pvh.kernel, pvh.standin);
  const lines = [
    `# Generated by fbxen: ${what} PVH guest (no device model; Xen enters the kernel directly).`,
    '# The kernel environment is the cmdline; the fbxen CD is a read-only PV disk (xbd1, found by its',
    '# label iso9660/FBXEN); the console is the Xen PV console xc0, which `xl create -c` attaches to.',
    `name = ${quote(spec.name)}`,
    `uuid = ${quote(spec.uuid)}`,
    'type = "pvh"',
    `kernel = ${quote(pvh.kernel)}`,
    `cmdline = ${quote(encodePvhCmdline(pvh.kernelEnv))}`,
    `memory = ${decimal(spec.memoryMiB)}`,
    `maxmem = ${decimal(spec.memoryMiB)}`,
    `vcpus = ${decimal(spec.vcpus)}`,
    `maxvcpus = ${decimal(spec.vcpus)}`,
    'disk = [',
    ...diskSpecs(spec).map((d) => `    ${quote(d)},`),
    ']',
    `vif = [ ${quote(vifSpec(spec))} ]`,
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    'on_crash = "preserve"',
  ];
  return `${lines.join('\n')}\n`;
}

/** TEST-ONLY: the stand-in guest (core/boot/standin-guest.ts), labelled so in the file itself. */
function renderStandin(spec: XlGuestSpec, kernel: string, standin: { ramdisk: string; cmdline: string; vif?: boolean | undefined }): string {
  const lines = [
    '# Generated by fbxen: TEST-ONLY STAND-IN GUEST (FBXEN_TEST_STANDIN_GUEST): a Linux PVH guest that replays',
    '# a recorded FreeBSD bundle, NOT FreeBSD; the fbxen CD is the read-only PV disk xvdb, the console hvc0.',
    standin.vif ? "# fbxen's vif: the stand-in's Linux netfront carries the round trip." : '# No vif: the recorded bundle has no xn0 to answer for one.',
    `name = ${quote(spec.name)}`,
    `uuid = ${quote(spec.uuid)}`,
    'type = "pvh"',
    `kernel = ${quote(kernel)}`,
    `ramdisk = ${quote(standin.ramdisk)}`,
    `cmdline = ${quote(standin.cmdline)}`,
    `memory = ${decimal(spec.memoryMiB)}`,
    `maxmem = ${decimal(spec.memoryMiB)}`,
    `vcpus = ${decimal(spec.vcpus)}`,
    `maxvcpus = ${decimal(spec.vcpus)}`,
    // rdtsc natively: Xen emulates it on a host without a reliable TSC (the lab), one exit per read (docs/lab.md)
    'tsc_mode = "native"',
    'disk = [',
    ...diskSpecs(spec).map((d) => `    ${quote(d)},`),
    ']',
    ...(standin.vif ? [`vif = [ ${quote(vifSpec(spec))} ]`] : []),
    'on_poweroff = "destroy"',
    'on_reboot = "destroy"',
    'on_crash = "preserve"',
  ];
  return `${lines.join('\n')}\n`;
}
