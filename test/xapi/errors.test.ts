/**
 * Issue 13: the XAPI failures users meet most get a hint that says what happened and what to do, built
 * from the error's own parameters (datamodel_errors.ml; SR_BACKEND_FAILURE_<n> carries ["", the SM
 * backend's text, its stderr], as storage_access/sm_exec raise it), never "see the XAPI error reference".
 * The same errors through the simulator and the boot flow are in boot.test.ts.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { XapiError } from '../../src/core/toolstack/xapi/errors.js';

const GENERIC = /error reference/;

describe('XapiError hints for the common codes', () => {
  it('VDI_IO_ERROR on an upload: a damaged or cut image, or the SR failing, and where to read which', () => {
    const e = new XapiError('VDI_IO_ERROR', ['Device I/O errors'], 'PUT /import_raw_vdi');
    expect(e.hint).not.toMatch(GENERIC);
    expect(e.hint).toMatch(/Device I\/O errors/);
    expect(e.hint).toMatch(/qemu-img check/);
    expect(e.hint).toMatch(/SMlog/);
  });

  it('SR_FULL names what was asked and what fits, in GiB, and --sr', () => {
    const e = new XapiError('SR_FULL', [String(10 * 2 ** 30), String(5 * 2 ** 30)], 'VDI.create');
    expect(e.hint).toMatch(/10\.0 GiB/);
    expect(e.hint).toMatch(/5\.0 GiB/);
    expect(e.hint).toMatch(/--sr/);
    // Unreadable numbers are shown as given, not as NaN.
    expect(new XapiError('SR_FULL', ['lots'], 'VDI.create').hint).not.toMatch(/NaN/);
  });

  it('SR_BACKEND_FAILURE_<n>: the backend code and text, with a hint for the space and availability codes', () => {
    const space = new XapiError('SR_BACKEND_FAILURE_44', ['', 'There is insufficient space', ''], 'VDI.create');
    expect(space.message).toContain('storage backend error 44: There is insufficient space');
    expect(space.hint).toMatch(/--sr/);
    expect(space.hint).not.toMatch(GENERIC);
    const gone = new XapiError('SR_BACKEND_FAILURE_47', ['', 'The SR is not available [opterr=Device not appeared yet]', ''], 'VM.start');
    expect(gone.message).toContain('storage backend error 47: The SR is not available [opterr=Device not appeared yet]');
    expect(gone.hint).toMatch(/xe pbd-plug/);
    const other = new XapiError('SR_BACKEND_FAILURE_82', ['', 'failed to pause VDI', 'Traceback ...'], 'VM.start');
    expect(other.message).toContain('storage backend error 82: failed to pause VDI');
    expect(other.hint).toMatch(/SMlog/);
    expect(other.hint).not.toMatch(GENERIC);
    const plain = new XapiError('SR_BACKEND_FAILURE', ['1', '', 'lvcreate: Volume group not found'], 'VDI.create');
    expect(plain.message).toContain('lvcreate: Volume group not found');
    expect(plain.hint).toMatch(/SMlog/);
  });

  it('HOST_IS_SLAVE: connect to the master its first parameter names', () => {
    const e = new XapiError('HOST_IS_SLAVE', ['10.0.0.1'], 'session.login_with_password');
    expect(e.hint).toMatch(/connect to 10\.0\.0\.1/);
    expect(e.hint).toMatch(/FBXEN_XAPI_URL/);
  });

  it('VM_REQUIRES_SR: the host cannot see the SR that holds the disks; a shared SR or --sr', () => {
    const e = new XapiError('VM_REQUIRES_SR', ['OpaqueRef:vm', 'OpaqueRef:sr'], 'VM.start');
    expect(e.hint).toMatch(/shared/);
    expect(e.hint).toMatch(/--sr/);
    expect(e.hint).toContain('OpaqueRef:sr');
  });

  it('SESSION_AUTHENTICATION_FAILED: names the user (never a password) and where the credentials come from', () => {
    const e = new XapiError('SESSION_AUTHENTICATION_FAILED', ['ci-bot', 'Authentication failure'], 'session.login_with_password');
    expect(e.hint).toMatch(/ci-bot/);
    expect(e.hint).toMatch(/FBXEN_XAPI_PASSWORD/);
    expect(e.hint).toMatch(/FBXEN_XAPI_CREDENTIALS_FILE/);
    // xapi's datamodel declares no parameters for it: still a useful hint.
    expect(new XapiError('SESSION_AUTHENTICATION_FAILED', [], 'session.login_with_password').hint).toMatch(/FBXEN_XAPI_USER/);
  });

  it('what a server sends is bounded in the message and the hint, whatever its size', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('VDI_IO_ERROR', 'SR_FULL', 'SR_BACKEND_FAILURE_44', 'SR_BACKEND_FAILURE_99', 'HOST_IS_SLAVE', 'VM_REQUIRES_SR', 'SESSION_AUTHENTICATION_FAILED', 'SOMETHING_ELSE'),
        fc.array(fc.string({ maxLength: 3000 }), { maxLength: 40 }),
        (code, params) => {
          const e = new XapiError(code, params, 'VDI.create');
          expect(e.message.length).toBeLessThan(4000);
          expect((e.hint ?? '').length).toBeLessThan(2000);
        },
      ),
      { numRuns: 200 },
    );
    const huge = new XapiError('SR_BACKEND_FAILURE_44', ['', 'x'.repeat(1_000_000), 'y'.repeat(1_000_000)], 'VDI.create');
    expect(huge.message.length).toBeLessThan(4000);
    expect(huge.params).toHaveLength(3); // the parameters themselves stay as XAPI sent them
  });
});
