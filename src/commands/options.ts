/**
 * Merges flags over the config file section and validates the whole request with zod. Flags win; a
 * zod issue names the key as the user wrote it (`build.disk-size`, or `--disk-size`).
 */
import type { Command } from 'commander';
import type { z } from 'zod';
import { ConfigError } from '../core/errors.js';

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

export function resolveRequest<S extends z.ZodType>(
  schema: S,
  command: string,
  configSection: Record<string, unknown>,
  flags: Record<string, unknown>,
): z.infer<S> {
  const fromConfig: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(configSection)) fromConfig[camel(k)] = v;
  const merged = { ...fromConfig, ...flags };
  const parsed = schema.safeParse(merged);
  if (parsed.success) return parsed.data;
  const issues = parsed.error.issues.map((issue) => {
    if (issue.code === 'unrecognized_keys') {
      return issue.keys.map((k) => (k in flags ? `--${kebab(k)}: unknown option` : `${command}.${kebab(k)} (config file): unknown option`)).join('; ');
    }
    const key = issue.path.map((p) => (typeof p === 'string' ? kebab(p) : String(p))).join('.');
    const top = typeof issue.path[0] === 'string' ? issue.path[0] : undefined;
    const where = top !== undefined && top in flags ? `--${key}` : key ? `${command}.${key} (config file)` : command;
    return `${where}: ${issue.message}`;
  });
  throw new ConfigError(`invalid options for fbxen ${command}`, issues, {
    hint: `see \`fbxen ${command} --help\``,
  });
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
