/** The one HMP-over-QMP helper every QMP-side monitor uses. */
import { describe, expect, it } from 'vitest';
import { HmpError, UnrecognizedOutputError } from '../../src/errors.js';
import { humanCommandOverQmp, humanCommandText } from '../../src/monitor/human-command.js';
import { MockMonitor } from '../../src/testing/index.js';

describe('human-monitor-command', () => {
  it('returns the text without \\r, sent as QEMU expects it', async () => {
    const sent: unknown[] = [];
    const text = await humanCommandOverQmp(async (command, args) => {
      sent.push({ command, args });
      return 'VM status: running\r\n';
    }, 'info status');
    expect(text).toBe('VM status: running\n');
    expect(sent).toEqual([{ command: 'human-monitor-command', args: { 'command-line': 'info status' } }]);
  });

  it('HMP error text in a successful reply is an HmpError naming the line', () => {
    const e = (() => {
      try {
        humanCommandText('migrate_set_parameter bogus 1', 'Error: invalid parameter value: bogus\r\n');
      } catch (err) {
        return err;
      }
    })() as HmpError;
    expect(e).toBeInstanceOf(HmpError);
    expect(e.command).toBe('migrate_set_parameter bogus 1');
    expect(e.text).toBe('Error: invalid parameter value: bogus');
  });

  it('a reply that is not a string is unrecognised output quoting it, never empty text', () => {
    expect(() => humanCommandText('info status', { status: 'running' })).toThrow(UnrecognizedOutputError);
    expect(() => humanCommandText('info status', undefined)).toThrow(
      /unrecognised reply of 'human-monitor-command info status'/,
    );
  });

  it('the mock reads a scripted non-string reply the same way as the real client', async () => {
    const mon = new MockMonitor();
    mon.setReply('human-monitor-command', 42);
    await expect(mon.humanCommand('info status')).rejects.toBeInstanceOf(UnrecognizedOutputError);
  });
});
