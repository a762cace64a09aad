/**
 * Argv of what a person sees and touches: VGA, VNC (TLS, password), SPICE, USB input and
 * host devices, sound, the guest-agent channel.
 */
import { isIP } from 'node:net';
import { esc, interfaceAddress, opts, type RenderState, useDriver } from './argv-common.js';
import { hasOption } from './features.js';

/** `-vga` values and the device each one creates. */
const VGA_DEVICES: Record<string, string | undefined> = {
  std: 'VGA',
  cirrus: 'cirrus-vga',
  vmware: 'vmware-svga',
  qxl: 'qxl-vga',
  virtio: 'virtio-vga',
  none: undefined,
};

function vncAddress(state: RenderState, display: number): string | undefined {
  const d = state.runtime.display;
  if (d.type !== 'vnc') return undefined;
  const bind = d.bind;
  if (bind.type === 'socket') return `unix:${bind.path}`;
  let ip: string | undefined;
  if (bind.type === 'ip') ip = bind.address;
  else {
    ip = interfaceAddress(state.ctx, bind.name, 4);
    if (!ip) {
      state.problems.push({
        param: 'vnc_bind_address',
        message: `interface '${bind.name}' has no IPv4 address on this node`,
      });
      return undefined;
    }
  }
  if (ip === '0.0.0.0') return `:${display}`;
  return isIP(ip) === 6 ? `[${ip}]:${display}` : `${ip}:${display}`;
}

/** `-vga`, `-display none`, VNC or SPICE. */
export function renderDisplay(state: RenderState): void {
  const { runtime, argv } = state;
  const hv = runtime.hvparams;
  const vga = hv.vga || (runtime.display.type === 'spice' ? 'qxl' : 'std');
  if (!(vga in VGA_DEVICES)) {
    state.problems.push({
      param: 'vga',
      message: `'${vga}' is not a VGA model this library renders (${Object.keys(VGA_DEVICES).join(', ')})`,
    });
  } else {
    const device = VGA_DEVICES[vga];
    if (device)
      useDriver(state, device, hv.vga ? 'vga' : runtime.display.type === 'spice' ? 'spice_bind' : 'vga');
    argv.push('-vga', vga);
  }
  argv.push('-display', 'none');
  const d = runtime.display;
  if (d.type === 'vnc') {
    const address = vncAddress(state, d.display ?? 0);
    if (d.tls) {
      argv.push(
        '-object',
        d.tls.x509Dir
          ? `tls-creds-x509,${opts([
              ['id', 'vnctls0'],
              ['endpoint', 'server'],
              ['dir', d.tls.x509Dir],
              ['verify-peer', d.tls.verifyPeer],
            ])}`
          : 'tls-creds-anon,id=vnctls0,endpoint=server',
      );
    }
    if (address !== undefined) {
      // The address part is positional: only a socket path may need escaping.
      const head = address.startsWith('unix:') ? `unix:${esc(address.slice(5))}` : address;
      const rest = opts([
        ['tls-creds', d.tls ? 'vnctls0' : undefined],
        ['password', d.password ? true : undefined],
      ]);
      argv.push('-vnc', rest ? `${head},${rest}` : head);
    }
  } else if (d.type === 'spice') {
    renderSpice(state);
  }
}

function renderSpice(state: RenderState): void {
  const { runtime, features, argv, ctx } = state;
  const d = runtime.display;
  if (d.type !== 'spice') return;
  const hv = runtime.hvparams;
  if (!hasOption(features, 'spice')) {
    state.problems.push({ param: 'spice_bind', message: `QEMU ${features.binary} is built without SPICE` });
    return;
  }
  let addr: string | undefined;
  let family: 'ipv4' | 'ipv6' | undefined;
  if (d.bind.type === 'ip') addr = d.bind.address;
  else {
    addr = interfaceAddress(ctx, d.bind.name, d.bind.ipVersion);
    if (!addr) {
      state.problems.push({
        param: 'spice_bind',
        message: `interface '${d.bind.name}' has no ${d.bind.ipVersion ? `IPv${d.bind.ipVersion} ` : ''}address on this node`,
      });
      return;
    }
    if (d.bind.ipVersion) family = d.bind.ipVersion === 6 ? 'ipv6' : 'ipv4';
  }
  const tls = hv.spice_use_tls;
  if (tls && !ctx.spiceTls) {
    state.problems.push({
      param: 'spice_use_tls',
      message: 'SPICE TLS needs the certificate files (LaunchContext.spiceTls)',
    });
    return;
  }
  argv.push(
    '-spice',
    opts([
      ['addr', addr],
      [family ?? 'ipv4', family ? true : undefined],
      ['port', tls ? undefined : d.port],
      ['tls-port', tls ? d.port : undefined],
      ['x509-cacert-file', tls ? ctx.spiceTls?.caCert : undefined],
      ['x509-key-file', tls ? ctx.spiceTls?.key : undefined],
      ['x509-cert-file', tls ? ctx.spiceTls?.cert : undefined],
      ['tls-ciphers', tls && hv.spice_tls_ciphers ? hv.spice_tls_ciphers : undefined],
      ['disable-ticketing', d.password ? undefined : true],
      ['image-compression', hv.spice_image_compression || undefined],
      ['jpeg-wan-compression', hv.spice_jpeg_wan_compression || undefined],
      ['zlib-glz-wan-compression', hv.spice_zlib_glz_wan_compression || undefined],
      ['streaming-video', hv.spice_streaming_video || undefined],
      ['playback-compression', hv.spice_playback_compression ? undefined : false],
      ['agent-mouse', hv.spice_use_vdagent ? undefined : false],
    ]),
  );
  if (hv.spice_use_vdagent) {
    useDriver(state, 'virtio-serial-pci', 'spice_use_vdagent');
    useDriver(state, 'virtserialport', 'spice_use_vdagent');
    argv.push(
      '-device',
      'virtio-serial-pci,id=spice',
      '-device',
      'virtserialport,bus=spice.0,chardev=spicechannel0,name=com.redhat.spice.0',
      '-chardev',
      'spicevmc,id=spicechannel0,name=vdagent',
    );
  }
}

/** One `usb_devices` entry as a `-device`: `host:VVVV:PPPP`, `host:BUS.ADDR`, or a guest device name. */
function usbDevice(entry: string): string | undefined {
  let m = /^host:([0-9a-fA-F]{1,4}):([0-9a-fA-F]{1,4})$/.exec(entry);
  if (m) return `usb-host,vendorid=0x${m[1]!.toLowerCase()},productid=0x${m[2]!.toLowerCase()}`;
  m = /^host:(\d+)\.(\d+)$/.exec(entry);
  if (m) return `usb-host,hostbus=${m[1]},hostaddr=${m[2]}`;
  const guest: Record<string, string> = { tablet: 'usb-tablet', mouse: 'usb-mouse', keyboard: 'usb-kbd' };
  return guest[entry];
}

/** USB controller, pointer (`usb_mouse`, or a tablet with VNC) and `usb_devices`. */
export function renderUsb(state: RenderState): void {
  const { runtime, argv } = state;
  const hv = runtime.hvparams;
  const devices: Array<[string, string]> = [];
  const mouse = hv.usb_mouse || (runtime.display.type === 'vnc' ? 'tablet' : '');
  if (mouse) devices.push([`usb-${mouse}`, hv.usb_mouse ? 'usb_mouse' : 'vnc_bind_address']);
  for (const entry of hv.usb_devices
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const device = usbDevice(entry);
    if (!device) {
      state.problems.push({
        param: 'usb_devices',
        message: `'${entry}' is not host:VENDOR:PRODUCT, host:BUS.ADDR, tablet, mouse or keyboard`,
      });
      continue;
    }
    devices.push([device, 'usb_devices']);
  }
  if (devices.length === 0) return;
  argv.push('-usb');
  for (const [device, param] of devices) {
    useDriver(state, device.split(',')[0]!, param);
    argv.push('-device', device);
  }
}

/** `soundhw`: `-audio` where QEMU has it (7.1+), else `-soundhw`. */
export function renderSound(state: RenderState): void {
  const { runtime, features, argv } = state;
  const model = runtime.hvparams.soundhw;
  if (!model) return;
  if (hasOption(features, 'audio')) {
    const driver = runtime.display.type === 'spice' ? 'spice' : 'none';
    argv.push(
      '-audio',
      opts([
        ['driver', driver],
        ['model', model],
        ['id', 'soundhw'],
      ]),
    );
  } else if (hasOption(features, 'soundhw')) {
    argv.push('-soundhw', model);
  } else {
    state.problems.push({
      param: 'soundhw',
      message: `QEMU ${features.binary} has neither -audio nor -soundhw`,
    });
  }
}

/** `use_guest_agent`: a virtio-serial port named `org.qemu.guest_agent.0` on the `.qga` socket. */
export function renderGuestAgent(state: RenderState): void {
  const { runtime, ctx, argv } = state;
  if (!runtime.hvparams.use_guest_agent) return;
  useDriver(state, 'virtio-serial-pci', 'use_guest_agent');
  useDriver(state, 'virtserialport', 'use_guest_agent');
  argv.push(
    '-chardev',
    `socket,${opts([
      ['id', 'qga0'],
      ['path', ctx.paths.qga],
      ['server', true],
      ['wait', false],
    ])}`,
    '-device',
    'virtio-serial-pci,id=qga0-serial',
    '-device',
    'virtserialport,bus=qga0-serial.0,chardev=qga0,name=org.qemu.guest_agent.0',
  );
}
