/**
 * Merges flags over the config file section and validates the whole request with zod. Flags win for
 * every key; a flag from one group of options that exclude each other drops the config file's members
 * of the other groups. Each problem is told in the user's words and named as the user wrote it:
 * `--disk-size`, or `build.disk-size (config file)` only when the value came from the config file.
 * A command line that does not parse is a usage error (exit 2); a bad config file value is exit 3.
 */
import type { Command } from 'commander';
import type { z } from 'zod';
import { ConfigError, UsageError } from '../core/errors.js';

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const camel = (s: string) => s.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/** Options that were given on the command line (not commander defaults). */
export function explicitFlags(cmd: Command): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(cmd.opts())) {
    const source = cmd.getOptionValueSource(key);
    if (value !== undefined && (source === 'cli' || source === 'env')) out[key] = value;
  }
  return out;
}

/**
 * Groups of keys (camelCase) that exclude each other, for instance [['release'], ['dist']]. When a flag
 * names a member of one group, the config file's members of the other groups are dropped.
 */
export type ExclusiveGroups = readonly (readonly (readonly string[])[])[];

/** The config file's values with the flags over them; `fromConfig` are the keys the file supplied. */
export function mergeOverConfig(configSection: Record<string, unknown>, flags: Record<string, unknown>, exclusive: ExclusiveGroups = []): { merged: Record<string, unknown>; fromConfig: Set<string> } {
  const config: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(configSection)) config[camel(k)] = v;
  for (const groups of exclusive) {
    const chosen = groups.filter((g) => g.some((k) => k in flags));
    if (chosen.length === 0) continue;
    for (const g of groups) if (!chosen.includes(g)) for (const k of g) delete config[k];
  }
  const fromConfig = new Set(Object.keys(config).filter((k) => !(k in flags)));
  return { merged: { ...config, ...flags }, fromConfig };
}

export function resolveRequest<S extends z.ZodType>(
  schema: S,
  command: string,
  configSection: Record<string, unknown>,
  flags: Record<string, unknown>,
  exclusive: ExclusiveGroups = [],
  /** The config file section's name when it is not the command's (`config xl` reads `boot:`). */
  section = command,
): z.infer<S> {
  const { merged, fromConfig } = mergeOverConfig(configSection, flags, exclusive);
  const parsed = schema.safeParse(merged, { reportInput: true });
  if (parsed.success) return parsed.data;
  let configIssue = false;
  const lines = parsed.error.issues.flatMap((issue): string[] => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => {
        if (k in flags) return `--${kebab(k)}: unknown option`;
        configIssue = true;
        return `${section}.${kebab(k)} (config file): unknown option (the keys are the options of \`fbxen ${command}\` without --)`;
      });
    }
    const top = typeof issue.path[0] === 'string' ? issue.path[0] : undefined;
    const text = describeIssue(issue, top !== undefined && issue.path.length === 1 ? merged[top] : undefined);
    if (top === undefined) return [text];
    if (fromConfig.has(top)) {
      configIssue = true;
      return [`${section}.${kebab(top)} (config file): ${text}`];
    }
    // A message that starts with its flag, or names the flags of a missing option, stands alone.
    if (text.startsWith(`--${kebab(top)} `) || (!(top in flags) && text.includes('--'))) return [text];
    return [`--${kebab(top)}: ${text}`];
  });
  const message = `invalid options for fbxen ${command}`;
  const hint = `see \`fbxen ${command} --help\`${configIssue ? ', and fix the config file' : ''}`;
  if (configIssue) throw new ConfigError(message, lines, { hint });
  throw new UsageError(message, { issues: lines, hint });
}

/** zod's default messages ("Invalid input", "Too small: ...") are replaced; a schema's own message is kept. */
const DEFAULT_MESSAGE = /^(Invalid|Too (small|big)|Unrecognized)/;

const show = (v: unknown) => (typeof v === 'string' ? `'${v}'` : typeof v === 'number' && Number.isNaN(v) ? 'not a number' : JSON.stringify(v) ?? String(v));

/** One zod issue in the user's words: the value given and what is accepted. */
export function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
  const own = DEFAULT_MESSAGE.test(issue.message) ? undefined : issue.message;
  // A coerced number reports its NaN, not what was typed: the raw value says what the user gave.
  const input = 'input' in issue && issue.input !== undefined && issue.input !== null && !Number.isNaN(issue.input) ? issue.input : raw;
  switch (issue.code) {
    case 'invalid_value':
      return `${show(input)} is not one of ${issue.values.map(String).join(', ')}`;
    case 'invalid_type': {
      if (input === undefined) return own ?? 'required';
      const what = issue.expected === 'int' ? 'a whole number' : issue.expected === 'number' ? 'a number' : issue.expected === 'boolean' ? 'true or false' : issue.expected === 'string' ? 'text' : issue.expected === 'array' ? 'a list' : String(issue.expected);
      return own ? `${show(input)}: ${own}` : `${show(input)} is not ${what}`;
    }
    case 'too_small':
      if (issue.origin === 'string') return own ?? 'must not be empty';
      if (issue.origin === 'array') return own ?? `give at least ${String(issue.minimum)}`;
      return own ? `${show(input)}: ${own}` : `${show(input)} is too small (at least ${String(issue.minimum)})`;
    case 'too_big':
      if (issue.origin === 'string') return own ?? `at most ${String(issue.maximum)} characters`;
      return own ? `${show(input)}: ${own}` : `${show(input)} is too large (at most ${String(issue.maximum)})`;
    case 'invalid_format':
      if (own) return `${show(input)}: expected ${own}`;
      return issue.format === 'url' ? `${show(input)} is not a URL` : `${show(input)} is not valid`;
    case 'invalid_union':
      return own ?? `${show(input)} is not valid here`;
    default:
      return own ?? `${show(input)} is not valid`;
  }
}

/** Parses "512M", "4G", "1024" (MiB when no unit) into bytes. */
export function parseSize(text: string, defaultUnit: 'M' | 'B' = 'M'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]i?B?|B)?$/i.exec(text.trim());
  if (!m) throw new Error(`"${text}" is not a size (use e.g. 512M, 4G)`);
  const n = Number(m[1]);
  const unit = (m[2] ?? defaultUnit).toUpperCase()[0] as 'B' | 'K' | 'M' | 'G' | 'T';
  const mult = { B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3, T: 1024 ** 4 }[unit];
  const bytes = n * mult;
  if (!Number.isSafeInteger(Math.round(bytes))) throw new Error(`"${text}" is too large`);
  return Math.round(bytes);
}
