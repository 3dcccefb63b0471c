/**
 * The progress port core code reports through. It never touches stdout: src/ui adapts it to listr2
 * (rich on a terminal, plain timestamped lines in CI) on stderr, and tests use the silent one.
 */
export interface StepHandle {
  /** A transient status line (bytes done, current file). */
  output(line: string): void;
}

export interface Progress {
  /** Runs one named step; steps run one after another. */
  step<T>(title: string, run: (handle: StepHandle) => Promise<T>): Promise<T>;
  /** A line worth keeping in the log (shown with --verbose, or always when important). */
  info(message: string): void;
  warn(message: string): void;
}

export const silentProgress: Progress = {
  step: (_title, run) => run({ output: () => undefined }),
  info: () => undefined,
  warn: () => undefined,
};

/** Formats a byte count for progress lines: 1.5 MiB, 734.0 KiB. */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${v.toFixed(1)} ${units[u]}`;
}
