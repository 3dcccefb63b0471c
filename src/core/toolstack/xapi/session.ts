/**
 * The XAPI session of one run: the settings checked before anything is contacted (for --dry-run too: a
 * plan never promises what the run refuses), the login, and the redaction of the password from
 * everything fbxen writes.
 */
import { access, constants } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ConfigError, EnvironmentError } from '../../errors.js';
import { XapiClient, type XapiCallRecord, type XapiClientOptions } from './client.js';
import { isPlainHttp, loadXapiCredentials, plainHttpWarning, redact, type XapiCredentials } from './credentials.js';

/** An open session given by the caller (tests, a flow that logged in itself): not logged out by close(). */
export type XapiSession = Pick<XapiClient, 'call' | 'callAsync'> & Partial<Pick<XapiClient, 'putFile' | 'masterUrl' | 'localAddress' | 'logout'>>;

export interface XapiDriverOptions {
  env: NodeJS.ProcessEnv;
  signal: AbortSignal;
  cwd?: string | undefined;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  insecureHttp?: boolean | undefined;
  /** an open session; without it the driver logs in from FBXEN_XAPI_* on first use */
  session?: XapiSession | undefined;
  /** the run id: tags the VM and the VDIs this run creates (other_config fbxen_run) */
  run?: string | undefined;
  /** the guest's CD is the fbxen CD the flow made (carries the run nonce): plans and titles say so */
  fbxenCd?: boolean | undefined;
  /** the deadline of uploads, imports and VM.start (VM.start at most 300 s) */
  timeoutMs?: number | undefined;
  /** migrate-test: the SR for VM.migrate_send when the disks are not on a shared SR (--dest-sr) */
  destSr?: string | undefined;
  /** the address the console listener binds (default: the advertised one when local, else all) */
  listenHost?: string | undefined;
  /** the address the pool's QEMU connects to (default: FBXEN_XAPI_CONSOLE_HOST, else the XAPI connection's local address) */
  consoleHost?: string | undefined;
  clientOptions?: Partial<XapiClientOptions> | undefined;
  /** progress: a titled step, a warning, a transcript line (already redacted) */
  step?: (<T>(title: string, fn: () => Promise<T>) => Promise<T>) | undefined;
  warn?: ((message: string) => void) | undefined;
  log?: ((line: string) => void) | undefined;
}

export interface XapiSettingsOptions {
  env: NodeJS.ProcessEnv;
  cwd?: string | undefined;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  /** --insecure-http: accept an http:// FBXEN_XAPI_URL (the password then travels in clear) */
  insecureHttp?: boolean | undefined;
  warn?: ((message: string) => void) | undefined;
}

export interface XapiSettings {
  creds: XapiCredentials;
  plainHttp: boolean;
  /** FBXEN_XAPI_CONSOLE_PORT, or undefined for a free one */
  consolePort: number | undefined;
  secrets: readonly string[];
  /** "# XAPI <url> as <user> (...); <transport>" for a plan's header */
  describe: string;
}

/** Credentials, the http rule, the console port and a readable CA file; plain http is warned about once. */
export async function checkXapiSettings(o: XapiSettingsOptions): Promise<XapiSettings> {
  const creds = await loadXapiCredentials(o.env, { insecureHttp: o.insecureHttp });
  const port = o.env['FBXEN_XAPI_CONSOLE_PORT'];
  if (port !== undefined && port !== '' && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)) {
    throw new ConfigError(`FBXEN_XAPI_CONSOLE_PORT ${JSON.stringify(port.slice(0, 40))} is not a TCP port`, [], { hint: 'set it to a port number from 1 to 65535 that the pool hosts can reach, or unset it for a free one' });
  }
  const plainHttp = isPlainHttp(creds.url);
  if (plainHttp) o.warn?.(plainHttpWarning(creds.url));
  if (o.caFile && !plainHttp) {
    await access(resolve(o.cwd ?? process.cwd(), o.caFile), constants.R_OK).catch(() => {
      throw new EnvironmentError(`the CA file ${o.caFile} cannot be read`, { hint: 'pass a PEM file with the pool certificate or its CA with --ca-file' });
    });
  }
  const transport = plainHttp ? 'plain http, NOT encrypted (--insecure-http)' : `TLS ${o.insecure ? 'NOT verified (--insecure)' : o.caFile ? `verified against ${o.caFile}` : 'verified against the system CAs'}`;
  const source = creds.source === 'file' && !o.env['FBXEN_XAPI_PASSWORD'] ? 'the credentials file' : 'FBXEN_XAPI_PASSWORD';
  return {
    creds,
    plainHttp,
    consolePort: port ? Number(port) : undefined,
    secrets: [creds.password],
    describe: `# XAPI ${creds.url} as ${creds.user} (password from ${source}, never printed); ${transport}`,
  };
}

export function loginPlanLine(user: string): string {
  return `session.login_with_password(${JSON.stringify(user)}, <password>, "1.1", "fbxen")  # follows HOST_IS_SLAVE to the master`;
}

/** Logs in; every call goes to `log` (the transcript) with the password and the session hidden. */
export async function login(s: XapiSettings, o: XapiSettingsOptions & { signal: AbortSignal; log?: ((line: string) => void) | undefined; clientOptions?: Partial<XapiClientOptions> | undefined }): Promise<XapiClient> {
  const log = o.log;
  const client = await XapiClient.connect({
    url: s.creds.url,
    user: s.creds.user,
    password: s.creds.password,
    caFile: o.caFile,
    insecure: o.insecure,
    signal: o.signal,
    transport: o.env['FBXEN_XAPI_TRANSPORT'] === 'xmlrpc' ? 'xmlrpc' : 'jsonrpc',
    onCall: log ? (r: XapiCallRecord) => log(redact(`${r.method}(${r.params.map((p) => JSON.stringify(p)).join(', ')}) ${r.durationMs} ms ${r.outcome}`, s.secrets)) : undefined,
    ...o.clientOptions,
  });
  if (client.masterUrl !== s.creds.url) log?.(`# redirected to the pool master ${client.masterUrl} (HOST_IS_SLAVE)`);
  return client;
}
