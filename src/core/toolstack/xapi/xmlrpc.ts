/**
 * The XML-RPC subset XAPI speaks (xapi.md §1), built and parsed with xml2js. XAPI's own rules:
 * ints travel as decimal strings (never <i4>), strings are written untyped (<value>x</value>) and
 * failures are ordinary values ({Status: "Failure", ErrorDescription}), not <fault>s. The parser is
 * whitespace tolerant (Python's xmlrpc indents; XAPI does not) and takes typed and untyped strings alike.
 */
import xml2js from 'xml2js';
import { InputError } from '../../errors.js';

/** A float that must travel as <double> (event.from's timeout); plain numbers are ints. */
export class XmlRpcDouble {
  constructor(readonly value: number) {}
}

export type XapiValue = string | number | boolean | XmlRpcDouble | null | XapiValue[] | { [key: string]: XapiValue };

type XmlNode = Record<string, unknown>;

function toXmlValue(v: XapiValue): unknown {
  if (v === null) return { nil: '' };
  if (v instanceof XmlRpcDouble) return { double: Number.isInteger(v.value) ? v.value.toFixed(1) : String(v.value) };
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return { boolean: v ? '1' : '0' };
  if (typeof v === 'number') {
    if (!Number.isSafeInteger(v)) return { double: String(v) };
    return String(v); // XAPI's int64 is a string of digits
  }
  if (Array.isArray(v)) return { array: { data: v.length ? { value: v.map(toXmlValue) } : '' } };
  const keys = Object.keys(v);
  if (!keys.length) return { struct: '' };
  return { struct: { member: keys.map((k) => ({ name: k, value: toXmlValue(v[k]!) })) } };
}

function builder(rootName: string, pretty: boolean): xml2js.Builder {
  return new xml2js.Builder({
    rootName,
    headless: !pretty,
    xmldec: { version: '1.0' },
    renderOpts: pretty ? { pretty: true, indent: ' ', newline: '\n' } : { pretty: false },
  });
}

/** One bare <value> document (ova.xml is exactly this). */
export function encodeXmlRpcValueDocument(v: XapiValue, options: { pretty?: boolean } = {}): string {
  return builder('value', options.pretty ?? false).buildObject(toXmlValue(v));
}

export function encodeMethodCall(method: string, params: readonly XapiValue[]): string {
  const body = { methodName: method, params: params.length ? { param: params.map((p) => ({ value: toXmlValue(p) })) } : '' };
  return `<?xml version="1.0"?>${builder('methodCall', false).buildObject(body)}`;
}

export function encodeMethodResponse(result: XapiValue): string {
  return `<?xml version="1.0"?>${builder('methodResponse', false).buildObject({ params: { param: { value: toXmlValue(result) } } })}`;
}

function parseXml(text: string): Promise<XmlNode> {
  const parser = new xml2js.Parser({ explicitArray: true, explicitRoot: true, includeWhiteChars: true, trim: false, normalize: false, explicitCharkey: true, charkey: '_', async: false });
  return new Promise((resolve, reject) => {
    // With explicitRoot the root element is an object, not a one-element array like every other child.
    parser.parseString(text, (err: Error | null, result: XmlNode | null) =>
      err ? reject(err) : resolve(Object.fromEntries(Object.entries(result ?? {}).map(([k, v]) => [k, Array.isArray(v) ? v : [v]]))),
    );
  });
}

function children(node: unknown, name: string): unknown[] {
  if (node && typeof node === 'object' && Array.isArray((node as XmlNode)[name])) return (node as XmlNode)[name] as unknown[];
  return [];
}

function text(node: unknown): string {
  if (typeof node === 'string') return node;
  if (node && typeof node === 'object') {
    const t = (node as XmlNode)['_'];
    return typeof t === 'string' ? t : '';
  }
  return '';
}

const ELEMENT_TYPES = ['string', 'int', 'i4', 'i8', 'boolean', 'double', 'dateTime.iso8601', 'base64', 'struct', 'array', 'nil'];

function bad(what: string): InputError {
  return new InputError(`malformed XML-RPC: ${what}`, { hint: 'the server did not answer like XAPI; check that the URL points at a XenServer/XCP-ng host' });
}

export function fromXmlValue(node: unknown): XapiValue {
  const typed = ELEMENT_TYPES.filter((t) => children(node, t).length);
  if (typed.length > 1) throw bad(`a <value> holds several types (${typed.join(', ')})`);
  const type = typed[0];
  if (!type) return text(node); // untyped <value>x</value> is a string
  const inner = children(node, type)[0];
  switch (type) {
    case 'string':
      return text(inner);
    case 'int':
    case 'i4':
    case 'i8': {
      const s = text(inner).trim();
      if (!/^[+-]?\d+$/.test(s)) throw bad(`<${type}> holds ${JSON.stringify(s)}`);
      return Number(s);
    }
    case 'boolean': {
      const s = text(inner).trim();
      if (s !== '0' && s !== '1') throw bad(`<boolean> holds ${JSON.stringify(s)}`);
      return s === '1';
    }
    case 'double': {
      const n = Number(text(inner).trim());
      if (Number.isNaN(n)) throw bad('<double> is not a number');
      return n;
    }
    case 'dateTime.iso8601':
    case 'base64':
      return text(inner).trim();
    case 'nil':
      return null;
    case 'array':
      return children(children(inner, 'data')[0], 'value').map(fromXmlValue);
    case 'struct': {
      const out: Record<string, XapiValue> = {};
      for (const m of children(inner, 'member')) {
        const name = children(m, 'name')[0];
        const value = children(m, 'value')[0];
        if (name === undefined || value === undefined) throw bad('a struct member without name or value');
        out[text(name)] = fromXmlValue(value);
      }
      return out;
    }
    default:
      throw bad(`unknown type ${type}`);
  }
}

export async function decodeValueDocument(xml: string): Promise<XapiValue> {
  const doc = await parseXml(xml).catch((e: unknown) => {
    throw bad(e instanceof Error ? e.message.split('\n')[0]! : String(e));
  });
  const root = children(doc, 'value')[0];
  if (root === undefined) throw bad('the document is not a single <value>');
  return fromXmlValue(root);
}

export async function decodeMethodResponse(xml: string): Promise<XapiValue> {
  const doc = await parseXml(xml).catch((e: unknown) => {
    throw bad(e instanceof Error ? e.message.split('\n')[0]! : String(e));
  });
  const resp = children(doc, 'methodResponse')[0];
  if (resp === undefined) throw bad('no <methodResponse>');
  const fault = children(resp, 'fault')[0];
  if (fault !== undefined) {
    const f = fromXmlValue(children(fault, 'value')[0]);
    throw bad(`a <fault> (${JSON.stringify(f)}); XAPI reports errors as values, so this is not XAPI`);
  }
  const value = children(children(children(resp, 'params')[0], 'param')[0], 'value')[0];
  if (value === undefined) throw bad('a <methodResponse> without a value');
  return fromXmlValue(value);
}

export async function decodeMethodCall(xml: string): Promise<{ method: string; params: XapiValue[] }> {
  const doc = await parseXml(xml).catch((e: unknown) => {
    throw bad(e instanceof Error ? e.message.split('\n')[0]! : String(e));
  });
  const call = children(doc, 'methodCall')[0];
  if (call === undefined) throw bad('no <methodCall>');
  const method = text(children(call, 'methodName')[0]).trim();
  if (!method) throw bad('no <methodName>');
  const params = children(children(call, 'params')[0], 'param').map((p) => fromXmlValue(children(p, 'value')[0]));
  return { method, params };
}
