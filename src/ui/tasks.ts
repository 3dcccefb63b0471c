/**
 * The only import of listr2: adapts core's Progress port to listr2 renderers on stderr. listr2 is
 * loaded at the first step, not at start-up.
 */
import type { Progress } from '../core/progress.js';

export interface UiOptions {
  quiet: boolean;
  verbose: boolean;
  /** Rich renderer: stderr is a terminal and CI is unset. */
  tty: boolean;
}

export function detectTty(env: NodeJS.ProcessEnv = process.env): boolean {
  return Boolean(process.stderr.isTTY) && !env.CI && env.TERM !== 'dumb';
}

export function createListrProgress(ui: UiOptions): Progress {
  let listr2: Promise<typeof import('listr2')> | undefined;
  let processOutput: import('listr2').ProcessOutput | undefined;
  const line = (level: string, message: string) => {
    if (!ui.quiet) process.stderr.write(`${ui.tty ? '' : `[${new Date().toISOString().slice(11, 19)}] `}${level}${message}\n`);
  };
  return {
    async step(title, run) {
      const { Listr, ListrLogger, PRESET_TIMESTAMP, ProcessOutput } = await (listr2 ??= import('listr2'));
      processOutput ??= new ProcessOutput(process.stderr, process.stderr);
      // A logger per step: the simple renderer adds its timestamp field to the logger it is given.
      const logger = new ListrLogger({ processOutput, useIcons: ui.tty });
      let result: unknown;
      // The error itself is printed once, by src/cli.ts; listr2 gets a stand-in for its FAILED line.
      let failure: { error: unknown } | undefined;
      const list = new Listr(
        [
          {
            title,
            task: async (_ctx, task) => {
              try {
                result = await run({ output: (text) => (task.output = text) });
              } catch (error) {
                failure = { error };
                throw new Error('see the error below');
              }
            },
            rendererOptions: { persistentOutput: ui.verbose },
          },
        ],
        {
          renderer: 'default',
          fallbackRenderer: 'simple',
          rendererOptions: { logger, showErrorMessage: false },
          fallbackRendererOptions: { logger, timestamp: PRESET_TIMESTAMP },
          forceTTY: ui.tty,
          fallbackRendererCondition: !ui.tty,
          silentRendererCondition: ui.quiet,
          exitOnError: true,
          registerSignalListeners: false,
          collectErrors: false,
        },
      );
      try {
        await list.run();
      } catch (err) {
        throw failure ? failure.error : err;
      }
      if (failure) throw failure.error;
      return result as never;
    },
    info: (message) => {
      if (ui.verbose) line('', message);
    },
    warn: (message) => line('warning: ', message),
  };
}
