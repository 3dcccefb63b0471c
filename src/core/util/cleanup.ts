/**
 * A stack of undo actions for what a run created (temporary files, domains). On failure or a signal
 * they run newest first; each runs once; a failing one is reported, and the rest still run.
 */
export type CleanupAction = { label: string; run: () => Promise<void> | void };

export class CleanupStack {
  private readonly actions: CleanupAction[] = [];

  push(label: string, run: CleanupAction['run']): () => void {
    const action = { label, run };
    this.actions.push(action);
    return () => this.forget(action);
  }

  private forget(action: CleanupAction): void {
    const i = this.actions.indexOf(action);
    if (i >= 0) this.actions.splice(i, 1);
  }

  /** Runs every pending action, newest first. Returns the failures as messages. */
  async unwind(): Promise<string[]> {
    const failures: string[] = [];
    while (this.actions.length) {
      const action = this.actions.pop()!;
      try {
        await action.run();
      } catch (err) {
        failures.push(`${action.label}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    return failures;
  }
}
