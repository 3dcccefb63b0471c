/**
 * What a resolved distribution set is. Its own module so that both sets.ts (which finds sets) and
 * set-cache.ts (which stores them) can name it without importing each other in a cycle.
 */
export const SET_NAMES = ['base', 'kernel'] as const;
export type SetName = (typeof SET_NAMES)[number];

export interface SetFile {
  name: SetName;
  /** A local file holding the .txz (a --dist file or the cache copy). */
  path: string;
  sha256: string;
  entries: number;
  /** Where it came from (URL or path), for build.json. */
  source: string;
}
