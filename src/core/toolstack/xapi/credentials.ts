/**
 * Where the XAPI URL, user and password come from: the environment (FBXEN_XAPI_URL, FBXEN_XAPI_USER,
 * FBXEN_XAPI_PASSWORD) or a file named by FBXEN_XAPI_CREDENTIALS_FILE (url=, user=, password= lines,
 * or YAML/JSON with those keys). Never from argv: a password in argv is visible in `ps` and shell history.
 * The file is refused when group or world can read it, like ssh does with private keys.
 */
import { readFile, stat } from 'node:fs/promises';
import { z } from 'zod';
import { parseYamlText } from '../../config-file.js';
import { ConfigError, InputError } from '../../errors.js';

export interface XapiCredentials {
  url: string;
  user: string;
  password: string;
  source: 'environment' | 'file';
}

const CredentialsSchema = z.object({
  url: z
    .string()
    .min(1)
    .refine((u) => /^https?:\/\/[^/]+/i.test(u), 'must be an http:// or https:// URL of the pool master')
    // user:password@host would put the secret where logs and plans print the URL.
    .refine((u) => !/^https?:\/\/[^/]*@/i.test(u), 'must not carry user or password (use FBXEN_XAPI_USER / FBXEN_XAPI_PASSWORD)'),
  user: z.string().min(1),
  password: z.string().min(1),
});

function parseFile(text: string): Record<string, unknown> {
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) return JSON.parse(trimmed) as Record<string, unknown>;
  // key=value lines first (shell-style env file); YAML otherwise.
  if (/^\s*(url|user|password)\s*=/m.test(trimmed)) {
    const out: Record<string, string> = {};
    for (const line of trimmed.split('\n')) {
      const m = /^\s*(?:export\s+)?(?:FBXEN_XAPI_)?(url|user|password)\s*=\s*(.*?)\s*$/i.exec(line);
      if (m) out[m[1]!.toLowerCase()] = m[2]!.replace(/^(['"])(.*)\1$/, '$2');
    }
    return out;
  }
  // Parse errors are replaced by the caller with a message that quotes nothing of the file.
  const y = parseYamlText(trimmed, 'the XAPI credentials file');
  return y && typeof y === 'object' ? (y as Record<string, unknown>) : {};
}

export interface LoadOptions {
  /** --insecure-http: accept an http:// URL, over which the password travels in clear. */
  insecureHttp?: boolean | undefined;
}

/** True for an http:// URL (any case): the login would carry the password unencrypted. */
export function isPlainHttp(url: string): boolean {
  return /^http:\/\//i.test(url);
}

/** The warning --insecure-http earns, printed once per run. */
export function plainHttpWarning(url: string): string {
  return `--insecure-http: the XAPI password goes to ${url} in clear, and so does every session token; use this only on a network you trust`;
}

export async function loadXapiCredentials(env: NodeJS.ProcessEnv, options: LoadOptions = {}): Promise<XapiCredentials> {
  const file = env['FBXEN_XAPI_CREDENTIALS_FILE'];
  let raw: Record<string, unknown>;
  let source: XapiCredentials['source'];
  if (file) {
    let st;
    try {
      st = await stat(file);
    } catch {
      throw new InputError(`the XAPI credentials file ${file} does not exist`, { hint: 'set FBXEN_XAPI_CREDENTIALS_FILE to a file with url=, user= and password= lines' });
    }
    if ((st.mode & 0o077) !== 0) {
      throw new InputError(`the XAPI credentials file ${file} can be read by group or others (mode ${(st.mode & 0o777).toString(8)})`, { hint: `run: chmod 600 ${file}` });
    }
    try {
      raw = parseFile(await readFile(file, 'utf8'));
    } catch {
      throw new InputError(`the XAPI credentials file ${file} cannot be parsed`, { hint: 'write url=..., user=... and password=... lines (or YAML/JSON with those keys)' });
    }
    // The environment may still override single keys (a CI secret for the password, the URL per job).
    raw = { ...raw, ...definedEnv(env) };
    source = 'file';
  } else {
    raw = definedEnv(env);
    source = 'environment';
  }
  const parsed = CredentialsSchema.safeParse(raw);
  if (!parsed.success) {
    // Name the missing or bad keys, never their values.
    const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'credentials'}: ${i.path[0] === 'password' ? 'missing or empty' : i.message}`);
    throw new ConfigError('XAPI credentials are incomplete', issues, {
      hint: 'set FBXEN_XAPI_URL, FBXEN_XAPI_USER and FBXEN_XAPI_PASSWORD, or FBXEN_XAPI_CREDENTIALS_FILE (mode 600); the password is never taken from the command line',
    });
  }
  const url = parsed.data.url.replace(/\/+$/, '');
  if (isPlainHttp(url) && !options.insecureHttp) {
    throw new ConfigError(`FBXEN_XAPI_URL ${url} is plain http: the password would cross the network in clear`, [], {
      hint: `use https://${url.replace(/^http:\/\//i, '')} (XAPI serves TLS on port 443; pin a self-signed pool certificate with --ca-file); on a network you trust, --insecure-http sends it in clear anyway`,
    });
  }
  return { ...parsed.data, url, source };
}

function definedEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  if (env['FBXEN_XAPI_URL']) out['url'] = env['FBXEN_XAPI_URL'];
  if (env['FBXEN_XAPI_USER']) out['user'] = env['FBXEN_XAPI_USER'];
  if (env['FBXEN_XAPI_PASSWORD']) out['password'] = env['FBXEN_XAPI_PASSWORD'];
  return out;
}

/** Replaces every occurrence of the secrets in a text (logs, transcripts, error messages). */
export function redact(text: string, secrets: readonly string[]): string {
  let out = text;
  for (const s of secrets) if (s.length >= 1) out = out.split(s).join('<redacted>');
  return out;
}
