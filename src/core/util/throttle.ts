/** Calls `fn` at most once per `everyMs`; in between it answers undefined (a poll asked too often). */
export function throttle<T>(everyMs: number, fn: () => Promise<T | undefined>, now: () => number = Date.now): () => Promise<T | undefined> {
  let last = -Infinity;
  return async () => {
    if (now() - last < everyMs) return undefined;
    last = now();
    return fn();
  };
}
