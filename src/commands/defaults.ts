/**
 * Copies of core values that the help text shows, so that registering the commands loads no core
 * module (start-up time). test/cli/docs.test.ts checks each against its source.
 */
/** core/imaging/sets.ts DEFAULT_MIRROR */
export const DEFAULT_MIRROR = 'https://download.freebsd.org';
/** core/imaging/formats.ts FORMAT_NAMES */
export const FORMAT_NAMES: readonly string[] = ['raw', 'qcow2', 'vhd', 'xva'];
/** core/imaging/xz-decoder.ts XZ_DECODERS */
export const XZ_DECODERS: readonly string[] = ['auto', '7zz', 'xz'];
/** core/run/artifacts.ts DEFAULT_ARTIFACTS_ROOT */
export const DEFAULT_ARTIFACTS_ROOT = 'fbxen-runs';
/** probes/index.ts probeIds */
export const PROBE_IDS: readonly string[] = ['xen-guest', 'generic-xenhvm', 'vector-callback', 'pv-timer', 'pv-ipi', 'blkfront-flush', 'cdrom', 'netfront', 'migration'];
