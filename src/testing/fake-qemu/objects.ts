/**
 * The user-creatable objects of a {@link FakeQemu} that a TLS migration uses: the
 * credentials (`tls-creds-x509`) and the authorization (`authz-list`, `authz-simple`), as
 * `object-add`/`object_add` and `object-del`/`object_del` create and remove them, with
 * QEMU's checks and error texts (measured on 5.2, 7.2, 10.0 and 11.1; the objects exist
 * from 2.5 (credentials) and 4.0 (authorization)). Credentials are loaded when created,
 * as QEMU does: the files of the endpoint must exist in `dir`.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { type QemuVersion, versionAtLeast } from '../../qemu/version.js';

/** One object: its QOM type and its properties as given. */
export interface FakeObject {
  qomType: string;
  props: Record<string, unknown>;
}

/** The types this fake creates, with the release that brought each. */
const TYPES: Record<string, [number, number]> = {
  'tls-creds-x509': [2, 5],
  'authz-list': [4, 0],
  'authz-simple': [4, 0],
};

const CREDS_FILES = {
  server: ['ca-cert.pem', 'server-cert.pem', 'server-key.pem'],
  client: ['ca-cert.pem', 'client-cert.pem', 'client-key.pem'],
} as const;

/** The objects of one QEMU, by id. */
export class FakeObjects {
  private readonly byId = new Map<string, FakeObject>();
  constructor(private readonly version: QemuVersion) {}

  /** The object `id`, or undefined. */
  get(id: string): FakeObject | undefined {
    return this.byId.get(id);
  }

  /** Ids present, in creation order. */
  ids(): string[] {
    return [...this.byId.keys()];
  }

  /** Creates an object; returns QEMU's error text, or undefined. */
  add(qomType: string, id: string, props: Record<string, unknown>): string | undefined {
    const since = TYPES[qomType];
    if (!since || !versionAtLeast(this.version, since[0], since[1])) return `invalid object type: ${qomType}`;
    if (!/^[A-Za-z][A-Za-z0-9_.-]*$/.test(id)) {
      return `Parameter 'id' expects an identifier`;
    }
    if (this.byId.has(id)) return `attempt to add duplicate property '${id}' to object (type 'container')`;
    const err = qomType === 'tls-creds-x509' ? loadCredentials(props) : checkAuthz(qomType, props);
    if (err) return err;
    this.byId.set(id, { qomType, props: { ...props } });
    return undefined;
  }

  /** Deletes an object; returns QEMU's error text, or undefined. */
  delete(id: string): string | undefined {
    if (!this.byId.delete(id)) return `object '${id}' not found`;
    return undefined;
  }
}

function loadCredentials(props: Record<string, unknown>): string | undefined {
  const endpoint = props.endpoint ?? 'client';
  if (endpoint !== 'server' && endpoint !== 'client') {
    return `Parameter 'endpoint' does not accept value '${String(endpoint)}'`;
  }
  const dir = props.dir;
  if (typeof dir !== 'string' || dir === '') return "Missing 'dir' property value";
  for (const f of CREDS_FILES[endpoint]) {
    const path = join(dir, f);
    if (!existsSync(path)) return `Unable to access credentials ${path}: No such file or directory`;
  }
  return undefined;
}

function checkAuthz(qomType: string, props: Record<string, unknown>): string | undefined {
  if (qomType === 'authz-simple') {
    return typeof props.identity === 'string' ? undefined : "Parameter 'identity' is missing";
  }
  const policy = props.policy ?? 'deny';
  if (policy !== 'allow' && policy !== 'deny')
    return `Parameter 'policy' does not accept value '${String(policy)}'`;
  const rules = props.rules ?? [];
  if (!Array.isArray(rules)) return "Invalid parameter type for 'rules', expected: array";
  for (const r of rules as Array<Record<string, unknown>>) {
    if (typeof r?.match !== 'string') return "Parameter 'rules.match' is missing";
  }
  return undefined;
}

/**
 * Parses HMP's `object_add TYPE,id=ID,key=value,…` (QemuOpts: `,,` is a comma; `rules.N.key`
 * builds the list): the type, the id and the properties.
 */
export function parseObjectAddLine(
  text: string,
): { qomType: string; id: string | undefined; props: Record<string, unknown> } | string {
  const parts: string[] = [];
  let cur = '';
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === ',' && text[i + 1] === ',') {
      cur += ',';
      i++;
    } else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else {
      cur += c;
    }
  }
  parts.push(cur);
  const [qomType = '', ...pairs] = parts;
  let id: string | undefined;
  const props: Record<string, unknown> = {};
  const rules: Array<Record<string, unknown>> = [];
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    if (eq < 0) return `Invalid parameter '${pair}'`;
    const key = pair.slice(0, eq);
    const value = pair.slice(eq + 1);
    const rule = /^rules\.(\d+)\.(\w+)$/.exec(key);
    if (key === 'id') id = value;
    else if (rule) {
      const n = Number(rule[1]);
      rules[n] ??= {};
      (rules[n] as Record<string, unknown>)[rule[2] as string] = value;
    } else props[key] = value;
  }
  if (rules.length > 0) props.rules = rules;
  return { qomType, id, props };
}
