/**
 * A XAPI failure as XAPI reports it: an error code and its parameters (datamodel_errors.ml), with a
 * hint that says what to do for the codes fbxen users meet. Parameters never hold the password
 * (fbxen never sends it anywhere but session.login_with_password, whose failure echoes only the user).
 */
import { ToolstackError, type ErrorOptions } from '../../errors.js';

const HINTS: Record<string, string> = {
  SESSION_AUTHENTICATION_FAILED: 'check FBXEN_XAPI_USER / FBXEN_XAPI_PASSWORD (or the credentials file); the user needs the pool-admin role',
  HOST_IS_SLAVE: 'point FBXEN_XAPI_URL at the pool master (fbxen follows one redirect by itself)',
  SESSION_INVALID: 'the session expired twice in a row; check the pool master is stable and retry',
  VM_BAD_POWER_STATE: 'the VM is not in the power state the operation needs; check it with `xe vm-list` and retry',
  OTHER_OPERATION_IN_PROGRESS: 'another operation holds the object; wait for it to finish and retry',
  DEFAULT_SR_NOT_FOUND: 'the pool has no default SR; pass --sr NAME',
  IMPORT_INCOMPATIBLE_VERSION: 'the XVA claims a newer xapi than the pool runs; rebuild it with this fbxen',
  VDI_IS_NOT_ISO: 'this xapi only puts ISO-SR VDIs in CD drives; fbxen falls back to a second disk',
  NO_HOSTS_AVAILABLE: 'no host can run the VM (memory, or the SR is not visible from any host); free memory or choose a shared SR',
  SR_FULL: 'the SR is full; free space or pass another --sr',
  MESSAGE_METHOD_UNKNOWN: 'the pool runs an xapi too old for this call; upgrade to XenServer 8 / XCP-ng 8.2 or newer',
  MESSAGE_PARAMETER_COUNT_MISMATCH: 'the pool runs a different API version than fbxen expects; report it with `fbxen --version` and the pool version',
  HANDLE_INVALID: 'the object no longer exists (somebody removed it meanwhile); retry',
  PERMISSION_DENIED: 'the XAPI user lacks the role for this call; use a pool-admin or vm-admin user',
  RBAC_PERMISSION_DENIED: 'the XAPI user lacks the role for this call; use a pool-admin or vm-admin user',
};

export class XapiError extends ToolstackError {
  constructor(
    readonly code: string,
    readonly params: readonly string[],
    readonly method: string,
    options: ErrorOptions = {},
  ) {
    super(`XAPI ${method} failed: ${code}${params.length ? ` ${JSON.stringify(params)}` : ''}`, { hint: options.hint ?? HINTS[code] ?? 'see the XAPI error reference for this code', cause: options.cause });
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
