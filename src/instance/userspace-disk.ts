/**
 * Userspace disk access (Ganeti's `access=userspace` for RBD and Gluster disks): QEMU opens
 * the image itself through its `rbd` or `gluster` block driver instead of a device the node
 * mapped. Ganeti hands the hypervisor a URI (`GetUserspaceAccessUri`: `rbd:pool/image`,
 * `gluster://host:port/volume/path`) and puts it in `-drive file=`; QEMU then parses it with
 * its legacy filename syntax. Here the URI is parsed once, strictly, into the structured
 * options of `-blockdev` / `blockdev-add` (QAPI `BlockdevOptionsRbd`,
 * `BlockdevOptionsGluster`), so that a part QEMU would read differently, or ignore, is an
 * error naming it rather than a disk opened somewhere else. Pure: no I/O.
 */

/** The protocol layer of a userspace disk, as `blockdev-add` takes it under `file`. */
export type UserspaceDiskProtocol =
  | {
      driver: 'rbd';
      pool: string;
      /** RADOS namespace (QEMU 4.0+). */
      namespace?: string;
      image: string;
      snapshot?: string;
      /** Ceph configuration file. */
      conf?: string;
      /** Ceph client id (`id=` in the legacy syntax). */
      user?: string;
      /** Monitors (`mon_host=`); port as a string, as QAPI's `InetSocketAddressBase` has it. */
      server?: { host: string; port: string }[];
    }
  | {
      driver: 'gluster';
      volume: string;
      path: string;
      server: ({ type: 'inet'; host: string; port: string } | { type: 'unix'; path: string })[];
    };

/** Why a userspace disk URI was refused (the caller names the field). */
export class UserspaceUriError extends Error {
  override readonly name = 'UserspaceUriError';
}

/** Gluster's management port, QEMU's default for `gluster://host/…`. */
const GLUSTER_DEFAULT_PORT = '24007';

const RBD_OPTIONS = new Set(['id', 'conf', 'mon_host']);

/**
 * Parses a userspace disk URI: `rbd:pool[/namespace]/image[@snapshot][:id=…][:conf=…][:mon_host=…]`
 * (QEMU's legacy syntax: `\:` for a colon inside a value, e.g. `mon_host=10.0.0.1\:6789`)
 * or `gluster[+tcp|+unix]://[host[:port]]/volume/path[?socket=…]`. Throws
 * {@link UserspaceUriError} quoting the part it refuses.
 */
export function parseUserspaceUri(uri: string): UserspaceDiskProtocol {
  if (/[\0\n,]/.test(uri)) {
    // A comma would end the -blockdev option; QEMU's own parser has no escape for it here.
    throw new UserspaceUriError(`'${uri}' contains a comma, a newline or a NUL byte`);
  }
  if (uri.startsWith('rbd:')) return parseRbd(uri);
  if (/^gluster(\+[a-z]+)?:\/\//.test(uri)) return parseGluster(uri);
  throw new UserspaceUriError(
    `'${uri}' is not an rbd: or gluster:// URI (Ganeti's userspace access for RBD and Gluster disks)`,
  );
}

function parseRbd(uri: string): UserspaceDiskProtocol {
  const [location = '', ...optionParts] = splitRbdFields(uri);
  if (location.includes('\\')) throw new UserspaceUriError(`'${uri}': escapes in the pool or image name`);
  const at = location.indexOf('@');
  const path = at < 0 ? location : location.slice(0, at);
  const snapshot = at < 0 ? undefined : location.slice(at + 1);
  const parts = path.split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new UserspaceUriError(`'${uri}': expected rbd:pool/image or rbd:pool/namespace/image`);
  }
  if (snapshot === '') throw new UserspaceUriError(`'${uri}': empty snapshot name after '@'`);
  const out: Extract<UserspaceDiskProtocol, { driver: 'rbd' }> = {
    driver: 'rbd',
    pool: parts[0]!,
    ...(parts.length === 3 ? { namespace: parts[1]! } : {}),
    image: parts.at(-1)!,
    ...(snapshot !== undefined ? { snapshot } : {}),
  };
  const seen = new Set<string>();
  for (const part of optionParts) {
    const eq = part.indexOf('=');
    const key = eq < 0 ? part : part.slice(0, eq);
    const value = eq < 0 ? '' : part.slice(eq + 1);
    if (!RBD_OPTIONS.has(key)) {
      throw new UserspaceUriError(
        `'${uri}': option '${key}' is not supported (only ${[...RBD_OPTIONS].join(', ')}; ceph.conf holds the rest)`,
      );
    }
    if (value === '') throw new UserspaceUriError(`'${uri}': option '${key}' has no value`);
    if (seen.has(key)) throw new UserspaceUriError(`'${uri}': option '${key}' is given twice`);
    seen.add(key);
    if (key === 'id') out.user = value;
    else if (key === 'conf') out.conf = value;
    else out.server = value.split(';').map((hostPort) => monitorAddress(uri, hostPort));
  }
  return out;
}

/**
 * The `:`-separated fields of QEMU's legacy rbd syntax after `rbd:`, with `\:` and `\\`
 * unescaped (a monitor's `host\:port` needs them). Any other backslash is refused.
 */
function splitRbdFields(uri: string): string[] {
  const fields: string[] = [''];
  const text = uri.slice('rbd:'.length);
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (c === ':') fields.push('');
    else if (c === '\\') {
      const next = text[i + 1];
      if (next !== ':' && next !== '\\') {
        throw new UserspaceUriError(`'${uri}': '\\' escapes only ':' or '\\'`);
      }
      fields[fields.length - 1] += next;
      i++;
    } else fields[fields.length - 1] += c;
  }
  return fields;
}

/** `host[:port]` or `[v6]:port` of a Ceph monitor (port 6789 when absent, as librados does). */
function monitorAddress(uri: string, hostPort: string): { host: string; port: string } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]/]+))(?::(\d{1,5}))?$/.exec(hostPort);
  if (!m || (m[3] !== undefined && Number(m[3]) > 65535)) {
    throw new UserspaceUriError(`'${uri}': mon_host entry '${hostPort}' is not host[:port]`);
  }
  return { host: (m[1] ?? m[2])!, port: m[3] ?? '6789' };
}

function parseGluster(uri: string): UserspaceDiskProtocol {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    throw new UserspaceUriError(`'${uri}' is not a valid URI`);
  }
  const transport = url.protocol.slice('gluster'.length, -1).replace(/^\+/, '') || 'tcp';
  if (transport !== 'tcp' && transport !== 'unix') {
    throw new UserspaceUriError(
      `'${uri}': transport '${transport}' is not supported (tcp or unix; QEMU dropped rdma)`,
    );
  }
  if (url.username || url.password || url.hash) {
    throw new UserspaceUriError(`'${uri}': user, password and fragment have no meaning for Gluster`);
  }
  const segments = decodeURIComponent(url.pathname).split('/').slice(1);
  const [volume = '', ...rest] = segments;
  const path = rest.join('/');
  if (volume === '' || path === '' || rest.some((s) => s === '')) {
    throw new UserspaceUriError(`'${uri}': expected gluster://host[:port]/volume/path/of/image`);
  }
  const params = [...url.searchParams.keys()];
  const unknown = params.filter((k) => k !== 'socket');
  if (unknown.length > 0) {
    throw new UserspaceUriError(`'${uri}': query parameter '${unknown[0]}' is not supported (only socket)`);
  }
  if (transport === 'unix') {
    const socket = url.searchParams.get('socket');
    if (url.host !== '') throw new UserspaceUriError(`'${uri}': gluster+unix takes no host (use ?socket=)`);
    if (!socket?.startsWith('/')) {
      throw new UserspaceUriError(`'${uri}': gluster+unix needs ?socket=/absolute/path`);
    }
    return { driver: 'gluster', volume, path, server: [{ type: 'unix', path: socket }] };
  }
  if (params.length > 0) throw new UserspaceUriError(`'${uri}': ?socket= is for gluster+unix only`);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (host === '') throw new UserspaceUriError(`'${uri}': no Gluster server host`);
  return {
    driver: 'gluster',
    volume,
    path,
    server: [{ type: 'inet', host, port: url.port || GLUSTER_DEFAULT_PORT }],
  };
}

/**
 * The dotted `-blockdev` options of a structured value under `prefix`: objects by key,
 * arrays by index (`file.server.0.host=…`), as QEMU's keyval syntax reads them.
 */
export function dottedOptions(prefix: string, value: unknown): [string, string][] {
  if (Array.isArray(value)) return value.flatMap((v, i) => dottedOptions(`${prefix}.${i}`, v));
  if (value !== null && typeof value === 'object') {
    return Object.entries(value).flatMap(([k, v]) => dottedOptions(`${prefix}.${k}`, v));
  }
  return [[prefix, String(value)]];
}

/** Where a disk's bytes are: the node's path, or the URI QEMU opens itself. */
export type DiskSource = { kind: 'file' | 'block'; path: string } | { kind: 'userspace'; uri: string };

/** The {@link DiskSource} fields of a spec or runtime disk (to copy them from one to the other). */
export function diskSource(disk: DiskSource): DiskSource {
  return disk.kind === 'userspace'
    ? { kind: 'userspace', uri: disk.uri }
    : { kind: disk.kind, path: disk.path };
}

/** What names a disk's bytes, for messages and duplicate checks: its path or its URI. */
export function diskLocation(disk: DiskSource): string {
  return disk.kind === 'userspace' ? disk.uri : disk.path;
}

/**
 * The protocol layer under a disk's format node, as `blockdev-add` takes it in `file`:
 * `file`/`host_device` with `aio` for the node's own files and devices, the parsed URI for
 * userspace disks (which have no `aio`). Throws {@link UserspaceUriError} for a URI the
 * checks would have refused.
 */
export function diskProtocolOptions(disk: DiskSource & { aio: string }): Record<string, unknown> {
  if (disk.kind === 'userspace') return { ...parseUserspaceUri(disk.uri) };
  return { driver: disk.kind === 'block' ? 'host_device' : 'file', filename: disk.path, aio: disk.aio };
}
