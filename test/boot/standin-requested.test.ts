/**
 * The test-only stand-in guest's variable (src/core/boot/standin-guest.ts): boot and migrate-test read it
 * through one standinRequested(), so an empty value means unset for both.
 */
import { describe, expect, it } from 'vitest';
import { STANDIN_ENV, standinRequested } from '../../src/core/boot/standin-guest.js';

describe('standinRequested', () => {
  it('is true only when FBXEN_TEST_STANDIN_GUEST is set and not empty', () => {
    expect(STANDIN_ENV).toBe('FBXEN_TEST_STANDIN_GUEST');
    expect(standinRequested({})).toBe(false);
    expect(standinRequested({ [STANDIN_ENV]: '' })).toBe(false);
    expect(standinRequested({ [STANDIN_ENV]: 'standin.json' })).toBe(true);
    expect(standinRequested({ OTHER: 'x' })).toBe(false);
  });
});
