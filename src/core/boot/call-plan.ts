/**
 * The --dry-run plan of a toolstack whose plan is a list of calls (XAPI): the calls as the driver's own
 * code makes them, unnumbered, between the flow's comment lines (the run's files, the wait, the verify).
 * xl's plan is numbered steps (prepare.ts renderBootPlan).
 */
import type { Toolstack } from '../toolstack/types.js';
import type { BootRequest, PreparedBoot } from './prepare.js';

export async function renderCallPlan(p: PreparedBoot, req: BootRequest, ts: Toolstack, header: string[], netLine: string): Promise<string> {
  const a = p.artifacts;
  const g = p.guest;
  const lines = [
    `# fbxen boot --toolstack ${ts.name} --dry-run: the calls fbxen would make; nothing was contacted`,
    ...header,
    `# image ${req.image}: ${g.image.format}, ${g.image.size} bytes; run ${p.run}; artifacts ${a.dir}`,
    ...(await ts.plan({ step: 'preflight', guest: g })),
    `# ${netLine}`,
    ...(await ts.plan({ step: 'stage', files: { image: g.image.path, ...(p.cd.kind !== 'empty' ? { cd: p.cd.path } : {}) } })),
    ...(await ts.plan({ step: 'create', guest: g, runDir: a.dir, consoleLog: a.consoleLog })),
    `# wait for ${p.expectRun ? `"FBXEN1 END ${p.expectRun} boot"` : 'the newest complete FBXEN1 boot frame of any run (no fbxen CD: the guest cannot know the run id)'} on the console, up to ${req.timeoutSec} s${req.verify ? '; then verify the bundle' : ''}`,
    ...(await ts.plan({ step: 'stop', guest: g, keep: req.keep, graceSec: req.graceSec ?? 60 })),
  ];
  return `${lines.join('\n')}\n`;
}
