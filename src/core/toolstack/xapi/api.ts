/**
 * What the XAPI driver calls through: the real client (each call checks the run's abort signal first),
 * or the recorder whose lines are the --dry-run call plan. Both run the same driver code, so a plan
 * shows the calls a run makes.
 */
import { basename } from 'node:path';
import { XapiError } from './errors.js';
import type { XapiValue } from './xmlrpc.js';

export const NULL_REF = 'OpaqueRef:NULL';

export type Rec = Record<string, XapiValue>;

export interface Api {
  call(method: string, ...params: XapiValue[]): Promise<XapiValue>;
  callAsync(method: string, params: XapiValue[], timeoutMs: number): Promise<XapiValue>;
  putFile(path: string, query: Record<string, string>, file: string, label: string, timeoutMs: number): Promise<XapiValue>;
}

/** Records the calls and answers with symbolic refs: the call plan of --dry-run. */
export class PlanRecorder implements Api {
  readonly lines: string[] = [];
  private n = 0;
  async call(method: string, ...params: XapiValue[]): Promise<XapiValue> {
    // Name the answer by what it is: pool.get_master answers a host, pool.get_default_SR an SR.
    const kind = /get_master$/.test(method) ? 'host' : /get_default_SR$/.test(method) ? 'SR' : method.split('.')[0];
    const ref = `<${kind}#${++this.n}>`;
    this.lines.push(`${method}(${['<session>', ...params.map(show)].join(', ')})`);
    return ref;
  }
  async callAsync(method: string, params: XapiValue[], timeoutMs: number): Promise<XapiValue> {
    this.lines.push(`Async.${method}(${['<session>', ...params.map(show)].join(', ')}) → wait for the task (event.from), up to ${Math.round(timeoutMs / 1000)} s`);
    return '';
  }
  async putFile(path: string, query: Record<string, string>, file: string, label: string): Promise<XapiValue> {
    const q = Object.entries({ session_id: '<session>', ...query, task_id: '<task>' })
      .map(([k, v]) => `${k}=${v}`)
      .join('&');
    this.lines.push(`task.create(<session>, "fbxen: ${label}", "")`);
    this.lines.push(`PUT ${path}?${q} ← ${basename(file)}; then wait for the task`);
    return path === '/import' ? ['<VM#imported>'] : '';
  }
  note(line: string): void {
    this.lines.push(`# ${line}`);
  }
}

function show(v: XapiValue): string {
  if (typeof v === 'string') return /^<.*>$/.test(v) ? v : JSON.stringify(v);
  if (v && typeof v === 'object' && !Array.isArray(v) && !('value' in v && Object.keys(v).length === 1)) {
    return `{${Object.entries(v)
      .map(([k, x]) => `${k}: ${show(x as XapiValue)}`)
      .join(', ')}}`;
  }
  if (Array.isArray(v)) return `[${v.map(show).join(', ')}]`;
  return JSON.stringify(v);
}

export function str(v: XapiValue | undefined): string {
  return typeof v === 'string' ? v : v === undefined || v === null ? '' : String(v);
}

/** Removing a map key that is not there is not an error worth stopping for (older xapi may report one). */
export async function ignoreMissingKey(p: Promise<XapiValue>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if (!(err instanceof XapiError) || err.code === 'SESSION_INVALID') throw err;
  }
}
