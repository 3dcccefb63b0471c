/**
 * A XAPI failure as XAPI reports it: an error code and its parameters (datamodel_errors.ml), with a
 * hint that says what to do for the codes fbxen users meet. Parameters never hold the password
 * (fbxen never sends it anywhere but session.login_with_password, whose failure echoes only the user).
 */
import { ToolstackError, type ErrorOptions } from '../../errors.js';

const HINTS: Record<string, string> = {
  SESSION_INVALID: 'the session expired twice in a row; check the pool master is stable and retry',
  VM_BAD_POWER_STATE: 'the VM is not in the power state the operation needs; check it with `xe vm-list` and retry',
  OTHER_OPERATION_IN_PROGRESS: 'another operation holds the object; wait for it to finish and retry',
  DEFAULT_SR_NOT_FOUND: 'the pool has no default SR; pass --sr NAME',
  IMPORT_INCOMPATIBLE_VERSION: 'the XVA claims a newer xapi than the pool runs; rebuild it with this fbxen',
  VDI_IS_NOT_ISO: 'this xapi only puts ISO-SR VDIs in CD drives; fbxen falls back to a second disk',
  NO_HOSTS_AVAILABLE: 'no host can run the VM (memory, or the SR is not visible from any host); free memory or choose a shared SR',
  MESSAGE_METHOD_UNKNOWN: 'the pool runs an xapi too old for this call; upgrade to XenServer 8 / XCP-ng 8.2 or newer',
  MESSAGE_PARAMETER_COUNT_MISMATCH: 'the pool runs a different API version than fbxen expects; report it with `fbxen --version` and the pool version',
  HANDLE_INVALID: 'the object no longer exists (somebody removed it meanwhile); retry',
  PERMISSION_DENIED: 'the XAPI user lacks the role for this call; use a pool-admin or vm-admin user',
  RBAC_PERMISSION_DENIED: 'the XAPI user lacks the role for this call; use a pool-admin or vm-admin user',
};

/** What a server sends is shown bounded: a parameter can be a whole SM traceback. */
const MAX_SHOWN_PARAM = 300;
const MAX_SHOWN_PARAMS = 6;

function clip(text: string, max = MAX_SHOWN_PARAM): string {
  const oneLine = text.replace(/\s+/g, ' ').replace(/[\u0000-\u001f\u007f-\u009f]/g, '?').trim();
  return oneLine.length > max ? `${oneLine.slice(0, max)}... (${oneLine.length} characters)` : oneLine;
}

function gib(bytes: string | undefined): string {
  const n = Number(bytes);
  return bytes !== undefined && /^\d+$/.test(bytes.trim()) && Number.isFinite(n) ? `${(n / 2 ** 30).toFixed(1)} GiB` : JSON.stringify(clip(bytes ?? '?', 40));
}

/** SR_BACKEND_FAILURE_<n>: xapi's wrapping of an SM backend error (storage_access: [""; reason; stderr]). */
const BACKEND_FAILURE = /^SR_BACKEND_FAILURE_(\d{1,6})$/;

/** The hint for a code, from its parameters (datamodel_errors.ml gives their meaning). */
export function xapiHint(code: string, params: readonly string[], method: string): string {
  const p = (i: number) => clip(params[i] ?? '');
  const smlog = 'the details are in /var/log/SMlog on the host that ran the operation (the pool master for an upload)';
  switch (code) {
    case 'VDI_IO_ERROR':
      return /^PUT \/import/.test(method) || /import/i.test(method)
        ? `xapi could not write the uploaded disk (${p(0) || 'I/O error'}): either the image is damaged or cut short (check it with \`qemu-img check\`, or build it again) or the SR failed a write; ${smlog}`
        : `the SR failed a read or write (${p(0) || 'I/O error'}); check the SR's health in XenCenter or with \`xe sr-list\`, then retry; ${smlog}`;
    case 'SR_FULL':
      return `the SR cannot hold what was asked (${gib(params[0])} requested, ${gib(params[1])} at most): free space on it (\`xe vdi-list sr-uuid=...\`), or pass --sr with another SR`;
    case 'HOST_IS_SLAVE':
      return params[0]
        ? `this host is a pool member: connect to ${p(0)}, the pool master (set FBXEN_XAPI_URL to its address); fbxen follows that redirect twice by itself, so the master is changing (HA failover?) or the pool disagrees about it`
        : 'this host is a pool member: set FBXEN_XAPI_URL to the pool master (`xe pool-list params=master` on any host)';
    case 'VM_REQUIRES_SR':
      return `the host chosen to start the VM cannot see SR ${p(1) || '(unnamed)'}, which holds its disks (a local SR of another host): pass --sr with a shared SR (NFS, iSCSI), or one every host can reach`;
    case 'SESSION_AUTHENTICATION_FAILED':
      return `the pool refused the login${params[0] ? ` of user ${JSON.stringify(p(0))}` : ''}: check FBXEN_XAPI_USER and FBXEN_XAPI_PASSWORD (or FBXEN_XAPI_CREDENTIALS_FILE); the user needs the pool-admin role, and an AD user the pool's external authentication`;
    case 'SR_BACKEND_FAILURE':
      return `the SR's storage backend failed (status ${p(0) || '?'}); ${smlog}`;
  }
  const backend = BACKEND_FAILURE.exec(code);
  if (backend) {
    // The SM codes users meet: 44 "There is insufficient space", 47 "The SR is not available".
    if (backend[1] === '44') return `the SR has no room for this: free space on it, or pass --sr with another SR; ${smlog}`;
    if (backend[1] === '47') return `the SR is not reachable from the host (storage down, or its PBD unplugged): check \`xe pbd-list sr-uuid=...\` and plug it (\`xe pbd-plug uuid=...\`), or pass --sr with another SR; ${smlog}`;
    return `the SR's storage backend failed with its code ${backend[1]}; ${smlog}`;
  }
  return HINTS[code] ?? `xapi failed with ${clip(code, 80)}; the pool master's /var/log/xensource.log has the details`;
}

/** The message text: the code, and for backend failures the backend's own words. */
function describe(code: string, params: readonly string[]): string {
  const backend = BACKEND_FAILURE.exec(code);
  if (backend) {
    const text = [params[1], params[2]].map((x) => clip(x ?? '')).filter(Boolean).join(' / ');
    return `${code} (storage backend error ${backend[1]}${text ? `: ${text}` : ''})`;
  }
  if (code === 'SR_BACKEND_FAILURE') {
    const text = params.map((x) => clip(x)).filter(Boolean).slice(0, 3).join(' / ');
    return `${code}${text ? ` (${text})` : ''}`;
  }
  const shown = params.slice(0, MAX_SHOWN_PARAMS).map((x) => clip(x));
  return `${clip(code, 80)}${params.length ? ` ${JSON.stringify(shown)}${params.length > MAX_SHOWN_PARAMS ? ` (+${params.length - MAX_SHOWN_PARAMS} more)` : ''}` : ''}`;
}

export class XapiError extends ToolstackError {
  constructor(
    readonly code: string,
    readonly params: readonly string[],
    readonly method: string,
    options: ErrorOptions = {},
  ) {
    super(`XAPI ${clip(method, 80)} failed: ${describe(code, params).slice(0, 3000)}`, { hint: options.hint ?? xapiHint(code, params, method), cause: options.cause });
  }
}

/** The transport failed (connection refused, TLS, timeout): nothing XAPI said. */
export class XapiTransportError extends ToolstackError {}

/** Turns an ErrorDescription-like value into (code, params) with every param as a string. */
export function errorDescription(value: unknown): { code: string; params: string[] } {
  const list = Array.isArray(value) ? value : [value];
  const [code, ...params] = list.map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
  return { code: code ?? 'INTERNAL_ERROR', params };
}
