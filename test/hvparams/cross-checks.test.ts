import { describe, expect, it } from 'vitest';
import {
  CROSS_PARAMETER_RULES,
  HvParamError,
  KVMHypervisor,
  VALID_SERIAL_SPEEDS,
} from '../../src/internal.js';

const withValues = (values: Record<string, unknown>): Record<string, unknown> => ({
  ...KVMHypervisor.fillDefaults({}),
  ...values,
});

/** All problems for the defaults plus `values`; [] when they pass. */
function problems(values: Record<string, unknown>) {
  try {
    KVMHypervisor.checkParameterSyntax(withValues(values));
    return [];
  } catch (error) {
    if (!(error instanceof HvParamError)) throw error;
    return error.problems;
  }
}

const params = (values: Record<string, unknown>) => problems(values).map((p) => p.param);

describe('cross-parameter rules (Ganeti TestParameterCheck)', () => {
  it('are the six rules of Ganeti, in order', () => {
    expect(CROSS_PARAMETER_RULES.map((r) => r.name)).toEqual([
      'check_boot_parameters',
      'check_security_model',
      'check_console_parameters',
      'check_vnc_parameters',
      'check_spice_parameters',
      'check_disk_cache_parameters',
    ]);
  });

  describe('VNC', () => {
    it('rejects x509_verify without an x509 path', () => {
      const found = problems({ vnc_x509_verify: true, vnc_x509_path: '' });
      expect(found).toHaveLength(1);
      expect(found[0]!.param).toBe('vnc_x509_verify');
      expect(found[0]!.message).toContain('vnc_x509_path');
    });
    it('accepts x509_verify with an x509 path', () => {
      expect(problems({ vnc_x509_verify: true, vnc_x509_path: '/etc/ganeti/vnc' })).toEqual([]);
    });
  });

  describe('security model', () => {
    it.each([
      ['user', '', 'security_model'],
      ['none', 'secure_user', 'security_domain'],
      ['pool', 'secure_user', 'security_domain'],
    ])('rejects %s with domain %j (reported on %s)', (model, domain, param) => {
      expect(params({ security_model: model, security_domain: domain })).toEqual([param]);
    });
    it.each([
      ['user', 'secure_user'],
      ['pool', ''],
      ['none', ''],
    ])('accepts %s with domain %j', (model, domain) => {
      expect(problems({ security_model: model, security_domain: domain })).toEqual([]);
    });
  });

  describe('boot', () => {
    it('rejects cdrom boot without an ISO (kernel set, root "/")', () => {
      const found = problems({
        boot_order: 'cdrom',
        cdrom_image_path: '',
        kernel_path: '/boot/k',
        root_path: '/',
      });
      expect(found).toEqual([
        {
          param: 'boot_order',
          message:
            "Cannot boot from cdrom without an ISO path: boot_order is 'cdrom' but cdrom_image_path is empty",
        },
      ]);
    });
    it('rejects a kernel without root partition (cdrom with ISO)', () => {
      for (const root of [null, '']) {
        const found = problems({
          boot_order: 'cdrom',
          cdrom_image_path: '/cd.iso',
          kernel_path: '/boot/k',
          root_path: root,
        });
        expect(found.map((p) => p.param)).toEqual(['kernel_path']);
        expect(found[0]!.message).toMatch(/^Need a root partition/);
      }
    });
    it.each([
      [{ boot_order: 'cdrom', cdrom_image_path: '/cd.iso', kernel_path: '/boot/k', root_path: '/' }],
      [{ boot_order: 'disk', cdrom_image_path: '', kernel_path: '/boot/k', root_path: '/' }],
      [{ boot_order: 'disk', cdrom_image_path: '', kernel_path: '', root_path: null }],
    ])('accepts %j', (values) => {
      expect(problems(values)).toEqual([]);
    });
    it('reports both boot problems at once', () => {
      expect(params({ boot_order: 'cdrom', cdrom_image_path: '', root_path: '' })).toEqual([
        'boot_order',
        'kernel_path',
      ]);
    });
  });

  describe('serial console', () => {
    it.each([1, 0, 38401])('rejects serial_console with speed %d', (speed) => {
      const found = problems({ serial_console: true, serial_speed: speed });
      expect(found.map((p) => p.param)).toEqual(['serial_speed']);
      expect(found[0]!.message).toContain(`Invalid serial console speed ${speed}`);
    });
    it('rejects serial_console with speed null (type problem, reported once)', () => {
      expect(params({ serial_console: true, serial_speed: null })).toEqual(['serial_speed']);
    });
    it('accepts any speed without serial_console', () => {
      expect(problems({ serial_console: false, serial_speed: 1 })).toEqual([]);
    });
    it.each([...VALID_SERIAL_SPEEDS])('accepts serial_console with speed %d', (speed) => {
      expect(problems({ serial_console: true, serial_speed: speed })).toEqual([]);
    });
    it('knows the 18 speeds of Ganeti', () => {
      expect(VALID_SERIAL_SPEEDS).toEqual([
        75, 110, 300, 600, 1200, 1800, 2400, 4800, 9600, 14400, 19200, 28800, 38400, 57600, 115200, 230400,
        345600, 460800,
      ]);
    });
  });

  describe('SPICE', () => {
    const extras = {
      spice_password_file: '/etc/spice.pw',
      spice_image_compression: 'lz',
      spice_jpeg_wan_compression: 'auto',
      spice_zlib_glz_wan_compression: 'never',
      spice_streaming_video: 'all',
      spice_use_tls: true,
    };
    it('rejects an IPv4 bind with ip version 6', () => {
      const found = problems({ spice_bind: '0.0.0.0', spice_ip_version: 6 });
      expect(found.map((p) => p.param)).toEqual(['spice_ip_version']);
      expect(found[0]!.message).toContain('IPv4');
    });
    it('rejects an IPv6 bind with ip version 4', () => {
      const found = problems({ spice_bind: '::', spice_ip_version: 4 });
      expect(found.map((p) => p.param)).toEqual(['spice_ip_version']);
      expect(found[0]!.message).toContain('IPv6');
    });
    it('rejects password_file and use_tls without a bind, one problem each', () => {
      const found = problems({ spice_bind: '', spice_password_file: '/pw', spice_use_tls: true });
      expect(found.map((p) => p.param)).toEqual(['spice_password_file', 'spice_use_tls']);
      expect(found[0]!.message).toContain('needs spice_bind');
    });
    it('rejects every additional option without a bind', () => {
      expect(params({ ...extras, spice_ip_version: 4 })).toEqual([
        'spice_ip_version',
        'spice_password_file',
        'spice_image_compression',
        'spice_jpeg_wan_compression',
        'spice_zlib_glz_wan_compression',
        'spice_streaming_video',
        'spice_use_tls',
      ]);
    });
    it('accepts no SPICE at all', () => {
      expect(problems({ spice_bind: '' })).toEqual([]);
    });
    it('accepts 0.0.0.0 with version 4 and every extra', () => {
      expect(problems({ spice_bind: '0.0.0.0', spice_ip_version: 4, ...extras })).toEqual([]);
    });
    it('accepts :: with version 6 and every extra', () => {
      expect(problems({ spice_bind: '::', spice_ip_version: 6, ...extras })).toEqual([]);
    });
    it('accepts any address with version 0, and an interface with any version', () => {
      expect(problems({ spice_bind: '::', spice_ip_version: 0 })).toEqual([]);
      expect(problems({ spice_bind: 'eth0', spice_ip_version: 6 })).toEqual([]);
    });
  });

  describe('disk cache and aio', () => {
    it('rejects native with writeback', () => {
      const found = problems({ disk_aio: 'native', disk_cache: 'writeback' });
      expect(found).toEqual([
        {
          param: 'disk_aio',
          message: "disk_aio 'native' needs disk_cache 'none' (current disk_cache: 'writeback')",
        },
      ]);
    });
    it.each(['writeback', 'default', 'writethrough'])('accepts threads with %s', (cache) => {
      expect(problems({ disk_aio: 'threads', disk_cache: cache })).toEqual([]);
    });
    it('accepts native with none', () => {
      expect(problems({ disk_aio: 'native', disk_cache: 'none' })).toEqual([]);
    });
  });
});
