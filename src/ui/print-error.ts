/** Formats an error for stderr: what went wrong and what to do; causes and stacks only with --debug. */
import { isFbxenError } from '../core/errors.js';

export function formatError(err: unknown, debug: boolean): string {
  const lines: string[] = [];
  if (isFbxenError(err)) {
    lines.push(`fbxen: error: ${err.message}`);
    if (err.hint) lines.push(...err.hint.split('\n').map((l, i) => (i === 0 ? `  hint: ${l}` : `        ${l}`)));
  } else {
    const e = err instanceof Error ? err : new Error(String(err));
    lines.push(`fbxen: internal error: ${e.message}`);
    lines.push('  This is a bug in fbxen. Please report it with the command you ran and the output of --debug.');
    lines.push(`  node ${process.version}, ${process.platform}/${process.arch}`);
    if (!debug && e.stack) lines.push(...e.stack.split('\n').slice(1, 6));
  }
  if (debug) {
    let cur: unknown = err;
    let depth = 0;
    while (cur instanceof Error && depth < 8) {
      lines.push(depth === 0 ? '' : `caused by: ${cur.message}`);
      if (cur.stack) lines.push(...cur.stack.split('\n').slice(1));
      cur = cur.cause;
      depth++;
    }
  }
  return `${lines.join('\n')}\n`;
}
