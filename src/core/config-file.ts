/** Reads fbxen.yaml (the only import of the yaml package). Sections are keyed by command name. */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';

const ConfigFile = z.record(z.string(), z.record(z.string(), z.unknown()).nullable()).nullable();
export type ConfigSections = Record<string, Record<string, unknown>>;

/** Parses YAML text (templates/files.yaml and the config file); errors name the file. */
export function parseYamlText(text: string, where: string): unknown {
  try {
    return parse(text, { prettyErrors: true, uniqueKeys: true });
  } catch (err) {
    throw new ConfigError(`${where} is not valid YAML: ${(err as Error).message}`, [], { hint: 'fix the YAML syntax' });
  }
}

/** Loads `explicitPath`, or ./fbxen.yaml when present; returns {} without a config file. */
export async function loadConfigFile(explicitPath: string | undefined, cwd: string): Promise<ConfigSections> {
  const path = explicitPath ?? `${cwd}/fbxen.yaml`;
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if (!explicitPath && (err as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new ConfigError(`cannot read config file ${path}: ${(err as Error).message}`, [], {
      hint: 'check the path given to --config',
    });
  }
  const doc = parseYamlText(text, path);
  const parsed = ConfigFile.safeParse(doc);
  if (!parsed.success) {
    throw new ConfigError(
      `${path} must map command names (build, boot, verify, migrate-test) to option maps`,
      parsed.error.issues.map((i) => `${i.path.join('.') || '(top)'}: ${i.message}`),
      { hint: 'example:\nbuild:\n  release: 14.3-RELEASE\n  arch: amd64' },
    );
  }
  const out: ConfigSections = {};
  for (const [k, v] of Object.entries(parsed.data ?? {})) out[k] = v ?? {};
  return out;
}
