/**
 * fbxen's own XAPI client (xapi-clients.md §4): JSON-RPC (POST /jsonrpc) by default, XML-RPC (POST /)
 * when asked or when the host does not answer JSON; login with originator "fbxen"; HOST_IS_SLAVE
 * followed to the master on the same scheme and port; one re-login on SESSION_INVALID; Async.* calls
 * waited for with event.from (task.get_record polling as fallback); a timeout per call; retries only
 * for calls that read (getters, event.from), never for calls that change state.
 *
 * Secrets: the password goes only into session.login_with_password; the session ref is a bearer token,
 * so the call log shows "<session>" for it and "<password>" for the password.
 */
import { readFileSync, createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import { z } from 'zod';
import { EnvironmentError, TimeoutError } from '../../errors.js';
import { decodeMethodResponse, decodeValueDocument, encodeMethodCall, XmlRpcDouble, type XapiValue } from './xmlrpc.js';
import { errorDescription, XapiError, XapiTransportError } from './errors.js';
import { sleep } from '../../util/sleep.js';

export type XapiTransport = 'jsonrpc' | 'xmlrpc';

export interface XapiCallRecord {
  method: string;
  /** Parameters with the session and password replaced by placeholders. */
  params: unknown[];
  durationMs: number;
  outcome: 'ok' | string;
}

export interface XapiClientOptions {
  url: string;
  user: string;
  password: string;
  transport?: XapiTransport | undefined;
  caFile?: string | undefined;
  insecure?: boolean | undefined;
  /** Per call (ms); async calls use their own deadline. */
  callTimeoutMs?: number | undefined;
  signal?: AbortSignal | undefined;
  onCall?: ((record: XapiCallRecord) => void) | undefined;
  /** Wait between task polls when event.from is unavailable (tests shorten it). */
  pollIntervalMs?: number | undefined;
}

const ORIGINATOR = 'fbxen';
const API_VERSION = '1.1';
const IDEMPOTENT = /(^|\.)(get_[A-Za-z_]*|get|event\.from|task\.get_record|system\.listMethods)$/;
const MAX_REDIRECTS = 2;

export function isIdempotent(method: string): boolean {
  return IDEMPOTENT.test(method) || method === 'event.from';
}

const JsonRpcResponse = z.union([
  z.object({ result: z.unknown(), error: z.null().optional(), id: z.unknown() }).loose(),
  z.object({ error: z.object({ code: z.number(), message: z.string(), data: z.array(z.unknown()).optional() }).loose(), id: z.unknown() }).loose(),
  z.object({ result: z.null().optional(), error: z.array(z.unknown()), id: z.unknown() }).loose(),
]);

const XmlRpcEnvelope = z.union([
  z.object({ Status: z.literal('Success'), Value: z.unknown().optional() }).loose(),
  z.object({ Status: z.literal('Failure'), ErrorDescription: z.array(z.unknown()) }).loose(),
]);

const TaskRecord = z
  .object({
    status: z.enum(['pending', 'success', 'failure', 'cancelling', 'cancelled']),
    progress: z.union([z.number(), z.string()]).optional(),
    result: z.string().optional(),
    error_info: z.array(z.unknown()).optional(),
  })
  .loose();

/** Hosts are compared and swapped as URL parts; IPv6 literals need brackets. */
export function redirectUrl(current: string, masterAddress: string): string {
  const u = new URL(current);
  u.hostname = masterAddress.includes(':') && !masterAddress.startsWith('[') ? `[${masterAddress}]` : masterAddress;
  return u.toString().replace(/\/+$/, '');
}

interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
  localAddress: string | undefined;
}

export class XapiClient {
  private url: string;
  private session: string | undefined;
  private transport: XapiTransport;
  private readonly agentOptions: https.AgentOptions;
  private readonly callTimeoutMs: number;
  private nextId = 1;
  /** The address this machine used to reach XAPI: what the pool can usually reach back (serial console). */
  localAddress: string | undefined;

  private constructor(private readonly opts: XapiClientOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    this.transport = opts.transport ?? 'jsonrpc';
    this.callTimeoutMs = opts.callTimeoutMs ?? 60_000;
    const ca = opts.caFile ? readCa(opts.caFile) : undefined;
    this.agentOptions = { rejectUnauthorized: !opts.insecure, ...(ca ? { ca } : {}) };
  }

  /** Logs in (following HOST_IS_SLAVE); the caller must logout(), also on errors. */
  static async connect(opts: XapiClientOptions): Promise<XapiClient> {
    const client = new XapiClient(opts);
    await client.login();
    return client;
  }

  get masterUrl(): string {
    return this.url;
  }

  get sessionRef(): string | undefined {
    return this.session;
  }

  private async login(): Promise<void> {
    for (let redirects = 0; ; redirects++) {
      try {
        this.session = String(await this.rawCall('session.login_with_password', [this.opts.user, this.opts.password, API_VERSION, ORIGINATOR]));
        return;
      } catch (err) {
        if (err instanceof XapiError && err.code === 'HOST_IS_SLAVE' && err.params[0] && redirects < MAX_REDIRECTS) {
          this.url = redirectUrl(this.url, err.params[0]);
          continue;
        }
        throw err;
      }
    }
  }

  /** Calls METHOD with the session as first parameter. */
  async call(method: string, ...params: XapiValue[]): Promise<XapiValue> {
    if (!this.session) throw new XapiTransportError('not logged in to XAPI', { hint: 'this is a bug in fbxen: connect() first' });
    let relogged = false;
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.rawCall(method, [this.session, ...params]);
      } catch (err) {
        if (err instanceof XapiError && err.code === 'SESSION_INVALID' && !relogged) {
          relogged = true;
          await this.login();
          continue;
        }
        if (err instanceof XapiTransportError && isIdempotent(method) && attempt < 2 && !this.opts.signal?.aborted) {
          await sleep(500 * (attempt + 1));
          continue;
        }
        throw err;
      }
    }
  }

  /**
   * Runs Async.METHOD and waits for its task (event.from on "task", falling back to polling), then
   * destroys the task. Returns the task's decoded result.
   */
  async callAsync(method: string, params: XapiValue[], timeoutMs: number): Promise<XapiValue> {
    const task = String(await this.call(`Async.${method}`, ...params));
    try {
      return await this.waitTask(task, method, timeoutMs);
    } finally {
      await this.call('task.destroy', task).catch(() => undefined);
    }
  }

  async waitTask(task: string, what: string, timeoutMs: number): Promise<XapiValue> {
    const deadline = Date.now() + timeoutMs;
    let token = '';
    let useEvents = true;
    for (;;) {
      if (this.opts.signal?.aborted) {
        await this.call('task.cancel', task).catch(() => undefined);
        throw Object.assign(new Error('cancelled'), { name: 'AbortError' });
      }
      const rec = TaskRecord.safeParse(await this.call('task.get_record', task));
      if (!rec.success) throw new XapiTransportError(`XAPI returned an unexpected task record for ${what}`, { hint: 'the server does not look like XAPI; check FBXEN_XAPI_URL' });
      const t = rec.data;
      if (t.status === 'success') return t.result ? decodeTaskResult(t.result) : '';
      if (t.status === 'failure' || t.status === 'cancelled') {
        const { code, params } = errorDescription(t.error_info ?? ['TASK_CANCELLED']);
        throw new XapiError(code, params, what);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        await this.call('task.cancel', task).catch(() => undefined);
        throw new TimeoutError(`XAPI ${what} did not finish within ${Math.round(timeoutMs / 1000)} s`, { hint: 'raise --timeout, or look at the task in XenCenter / `xe task-list`' });
      }
      if (useEvents) {
        try {
          const wait = Math.min(left, 30_000) / 1000;
          const ev = (await this.call('event.from', ['task'], token, new XmlRpcDouble(wait))) as { token?: unknown };
          token = typeof ev?.token === 'string' ? ev.token : token;
          continue;
        } catch (err) {
          if (!(err instanceof XapiError) || err.code !== 'MESSAGE_METHOD_UNKNOWN') throw err;
          useEvents = false;
        }
      }
      await sleep(Math.min(left, this.opts.pollIntervalMs ?? 1000));
    }
  }

  /**
   * PUTs a file to an HTTP handler (/import, /import_raw_vdi) with a known Content-Length, in a task
   * fbxen created, and waits for that task. A 302 (the SR is reachable from another host) is
   * followed by sending the file again from the start.
   */
  async putFile(path: string, query: Record<string, string>, file: string, label: string, timeoutMs: number): Promise<XapiValue> {
    const task = String(await this.call('task.create', `fbxen: ${label}`, ''));
    try {
      const size = (await stat(file)).size;
      let target = new URL(path, `${this.url}/`);
      for (const [k, v] of Object.entries({ ...query, session_id: this.session!, task_id: task })) target.searchParams.set(k, v);
      for (let redirects = 0; ; redirects++) {
        const started = Date.now();
        const res = await this.request('PUT', target, { file, size }, timeoutMs);
        // The transcript shows the upload like a call, with the session (a bearer token) hidden.
        const shown = new URL(target);
        shown.searchParams.set('session_id', '<session>');
        this.opts.onCall?.({ method: `PUT ${target.pathname}`, params: [decodeURIComponent(shown.search), `${size} bytes`], durationMs: Date.now() - started, outcome: res.status === 200 ? 'ok' : `HTTP ${res.status}` });
        if ((res.status === 302 || res.status === 301) && res.headers.location && redirects < MAX_REDIRECTS) {
          const next = new URL(res.headers.location, target);
          // The query carries the session (a bearer token): never follow a redirect from https to plain http.
          if (next.protocol !== target.protocol && !(target.protocol === 'http:' && next.protocol === 'https:')) {
            throw new XapiTransportError(`XAPI redirected the upload from ${target.protocol}//${target.host} to ${next.protocol}//${next.host}: refused, the session would travel in clear`, {
              hint: 'the pool host that sees the SR must serve https as the master does; check its certificate and xapi-ssl setup',
            });
          }
          target = next;
          continue;
        }
        if (res.status !== 200) {
          throw new XapiTransportError(`XAPI ${path} answered HTTP ${res.status}`, { hint: res.status === 500 ? 'XAPI rejected the upload; see the task error in `xe task-list` or /var/log/xensource.log on the master' : 'check FBXEN_XAPI_URL and that the user may import' });
        }
        break;
      }
      return await this.waitTask(task, `PUT ${path}`, timeoutMs);
    } finally {
      await this.call('task.destroy', task).catch(() => undefined);
    }
  }

  /** Logs out; never throws (it runs during cleanup). */
  async logout(): Promise<void> {
    if (!this.session) return;
    const s = this.session;
    this.session = undefined;
    await this.rawCall('session.logout', [s]).catch(() => undefined);
  }

  private redactParams(method: string, params: readonly XapiValue[]): unknown[] {
    return params.map((p, i) => {
      if (method === 'session.login_with_password' && i === 1) return '<password>';
      if (typeof p === 'string' && p === this.session) return '<session>';
      if (method === 'session.logout' && i === 0) return '<session>'; // already forgotten by logout()
      if (p instanceof XmlRpcDouble) return p.value;
      return p;
    });
  }

  private async rawCall(method: string, params: XapiValue[]): Promise<XapiValue> {
    const started = Date.now();
    let outcome = 'ok';
    try {
      return await this.dispatch(method, params);
    } catch (err) {
      outcome = err instanceof XapiError ? err.code : err instanceof Error ? err.name : 'error';
      throw err;
    } finally {
      this.opts.onCall?.({ method, params: this.redactParams(method, params), durationMs: Date.now() - started, outcome });
    }
  }

  private async dispatch(method: string, params: XapiValue[]): Promise<XapiValue> {
    if (this.transport === 'jsonrpc') {
      const id = this.nextId++;
      const body = JSON.stringify({ jsonrpc: '2.0', method, params: params.map(jsonParam), id }, (_k, v: unknown) => v);
      const res = await this.request('POST', new URL('/jsonrpc', `${this.url}/`), { body, contentType: 'application/json' }, this.callTimeoutMs);
      // Old hosts without /jsonrpc answer 404 or text/xml: fall back to XML-RPC once and for all.
      if (res.status === 404 || (res.status === 200 && !/json/i.test(String(res.headers['content-type'] ?? '')))) {
        this.transport = 'xmlrpc';
        return this.dispatch(method, params);
      }
      if (res.status !== 200) throw httpError(method, res.status);
      let json: unknown;
      try {
        json = JSON.parse(res.body);
      } catch {
        throw new XapiTransportError(`XAPI ${method}: the JSON-RPC answer is not JSON`, { hint: 'check FBXEN_XAPI_URL points at a XenServer/XCP-ng host' });
      }
      const parsed = JsonRpcResponse.safeParse(json);
      if (!parsed.success) throw new XapiTransportError(`XAPI ${method}: unexpected JSON-RPC answer`, { hint: 'check FBXEN_XAPI_URL points at a XenServer/XCP-ng host' });
      const r = parsed.data as { result?: unknown; error?: unknown };
      if (r.error !== undefined && r.error !== null) {
        const e = r.error as { message?: string; data?: unknown[] } | unknown[];
        const { code, params: p } = Array.isArray(e) ? errorDescription(e) : errorDescription([e.message ?? 'INTERNAL_ERROR', ...(e.data ?? [])]);
        throw new XapiError(code, p, method);
      }
      return r.result as XapiValue;
    }
    const res = await this.request('POST', new URL('/', `${this.url}/`), { body: encodeMethodCall(method, params), contentType: 'text/xml' }, this.callTimeoutMs);
    if (res.status !== 200) throw httpError(method, res.status);
    const value = await decodeMethodResponse(res.body);
    const env = XmlRpcEnvelope.safeParse(value);
    if (!env.success) throw new XapiTransportError(`XAPI ${method}: the answer has no Status`, { hint: 'check FBXEN_XAPI_URL points at a XenServer/XCP-ng host' });
    if (env.data.Status === 'Failure') {
      const { code, params: p } = errorDescription(env.data.ErrorDescription);
      throw new XapiError(code, p, method);
    }
    return (env.data.Value ?? '') as XapiValue;
  }

  private request(method: 'POST' | 'PUT', url: URL, body: { body: string; contentType: string } | { file: string; size: number }, timeoutMs: number): Promise<HttpResponse> {
    const lib = url.protocol === 'https:' ? https : http;
    const headers: http.OutgoingHttpHeaders =
      'body' in body ? { 'content-type': body.contentType, 'content-length': Buffer.byteLength(body.body) } : { 'content-length': body.size, 'content-type': 'application/octet-stream' };
    return new Promise<HttpResponse>((resolve, reject) => {
      const req = lib.request(url, { method, headers, ...(url.protocol === 'https:' ? this.agentOptions : {}) }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          clearTimeout(timer);
          this.localAddress = res.socket?.localAddress ?? this.localAddress;
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8'), localAddress: res.socket?.localAddress });
        });
        res.on('error', fail);
      });
      const where = `${url.protocol}//${url.host}`;
      function fail(err: Error & { code?: string }): void {
        clearTimeout(timer);
        if (err.name === 'AbortError') return reject(err);
        const tls = /CERT|SELF_SIGNED|UNABLE_TO_VERIFY|ERR_TLS/.test(err.code ?? '');
        reject(
          tls
            ? new EnvironmentError(`TLS verification of ${where} failed: ${err.code}`, { hint: "pass the pool's CA with --ca-file (XenServer: /etc/stunnel/xapi-ssl.pem on the master), or --insecure for a lab pool" })
            : new XapiTransportError(`cannot reach XAPI at ${where}: ${err.code ?? err.message}`, { hint: 'check FBXEN_XAPI_URL, the network path to the pool master and that xapi runs there' }),
        );
      }
      const timer = setTimeout(() => {
        req.destroy();
        reject(new TimeoutError(`XAPI at ${where} did not answer within ${Math.round(timeoutMs / 1000)} s`, { hint: 'check the pool master is responsive; raise --timeout for large uploads' }));
      }, timeoutMs);
      req.on('error', fail);
      if ('body' in body) {
        req.end(body.body);
      } else {
        const s = createReadStream(body.file);
        s.on('error', (e) => {
          req.destroy(e);
        });
        s.pipe(req);
        // A server may answer (302, 500) before it has read the body: stop sending.
        req.on('response', () => s.destroy());
      }
    });
  }
}

function httpError(method: string, status: number): XapiTransportError {
  return new XapiTransportError(`XAPI ${method}: HTTP ${status}`, { hint: status === 500 ? 'XAPI could not parse the request; report this with --debug output' : 'check FBXEN_XAPI_URL points at the pool master' });
}

/** JSON-RPC carries ints as numbers and floats as numbers. */
function jsonParam(v: XapiValue): unknown {
  if (v instanceof XmlRpcDouble) return v.value;
  if (Array.isArray(v)) return v.map(jsonParam);
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, jsonParam(x)]));
  return v;
}

/** task.result is an XML-RPC encoded value ("<value>OpaqueRef:..</value>"), or empty. */
export async function decodeTaskResult(result: string): Promise<XapiValue> {
  const t = result.trim();
  if (!t.startsWith('<value')) return t;
  return decodeValueDocument(t);
}

function readCa(file: string): Buffer {
  try {
    return readFileSync(file);
  } catch {
    throw new EnvironmentError(`the CA file ${file} cannot be read`, { hint: 'pass a PEM file with the pool certificate or its CA with --ca-file' });
  }
}

