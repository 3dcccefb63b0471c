/**
 * Reads fbxen.yaml (the only import of the yaml package). Sections are keyed by command name. src/cli.ts
 * imports this module only when there is a config file to read (start-up).
 */
import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { z } from 'zod';
import { ConfigError } from './errors.js';

const ConfigFile = z.record(z.string(), z.record(z.string(), z.unknown()).nullable()).nullable();
export type ConfigSections = Record<string, Record<string, unknown>>;
/** The sections a config file may have: the commands that read one. */
const SECTIONS = ['build', 'boot', 'verify', 'migrate-test', 'lab'];
const EXAMPLE = 'example:\nbuild:\n  release: 14.3-RELEASE\n  arch: amd64';

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
    const shape = (v: unknown) => (Array.isArray(v) ? 'a list' : JSON.stringify(v) ?? String(v));
    throw new ConfigError(
      `${path} must map command names (${SECTIONS.join(', ')}) to option maps`,
      [
        ...new Set(
          parsed.error.issues.map((i) => {
            const section = i.path[0];
            if (typeof section !== 'string') return `the file holds ${shape(doc)}`;
            const value = (doc as Record<string, unknown>)[section];
            return `${section} (config file): must map option names to values, not ${shape(value)}`;
          }),
        ),
      ],
      { hint: EXAMPLE },
    );
  }
  // A misspelt section would be ignored, and its options silently not apply.
  const unknown = Object.keys(parsed.data ?? {}).filter((k) => !SECTIONS.includes(k));
  if (unknown.length) {
    throw new ConfigError(
      `${path} has a section fbxen does not know`,
      unknown.map((k) => `${k} (config file): unknown section; the sections are ${SECTIONS.join(', ')}`),
      { hint: 'fix the section name (`fbxen config xl` reads boot:)' },
    );
  }
  const out: ConfigSections = {};
  for (const [k, v] of Object.entries(parsed.data ?? {})) out[k] = v ?? {};
  return out;
}
