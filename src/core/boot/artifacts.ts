/**
 * The step only a boot takes in its run directory (core/run/artifacts.ts has the rest: paths, run.json,
 * transcript, `latest`): verifying the collected bundle into report.json and report.junit.xml.
 */
import { writeFileAtomic } from '../util/atomic.js';
import type { Bundle, Report } from '../verify/index.js';

/** Runs the probes on a collected bundle and writes report.json and report.junit.xml into the run. */
export async function verifyIntoArtifacts(bundle: Bundle, paths: { reportJson: string; reportJunit: string }, frameRun?: string, bootType?: { type: 'hvm' | 'pvh'; source: string }): Promise<Report> {
  // Loaded only when verifying, so booting does not depend on the probe code.
  const verify = await import('../verify/index.js');
  // The bundle inside must be this run's (a replayed old bundle is refused), and fbxen boot always attaches a CD drive.
  if (frameRun !== undefined) verify.checkBundleRun(bundle, { frameRun, what: `the console frame of run ${frameRun}` });
  // The boot type fbxen asked for: the probes judge the guest against it (src/probes/pvh.ts).
  const report = verify.runProbes(bundle, { cdAttached: 'fbxen boot attached a CD drive to this domain', ...(bootType ? { bootType } : {}) });
  const junit = verify.renderJunit(report);
  await writeFileAtomic(paths.reportJson, `${JSON.stringify(verify.renderReportJson(report), null, 2)}\n`);
  await writeFileAtomic(paths.reportJunit, junit.endsWith('\n') ? junit : `${junit}\n`);
  return report;
}
