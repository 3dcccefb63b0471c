/** The ports a core operation gets from its command: passed explicitly, no module-level singletons. */
import type { Runner } from './exec/runner.js';
import type { Progress } from './progress.js';
import type { CleanupStack } from './util/cleanup.js';

export interface CoreDeps {
  runner: Runner;
  progress: Progress;
  signal: AbortSignal;
  cleanup: CleanupStack;
  env: NodeJS.ProcessEnv;
  cwd: string;
}
