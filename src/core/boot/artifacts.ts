/**
 * The step only a boot takes in its run directory (core/run/artifacts.ts has the rest: paths, run.json,
 * transcript, `latest`): verifying the collected bundle into report.json and report.junit.xml.
 */
import { writeFileAtomic } from '../util/atomic.js';
import type { Bundle, Report } from '../verify/index.js';
import type { NetHostKnowledge } from '../../probes/types.js';

/** Runs the probes on a collected bundle and writes report.json and report.junit.xml into the run. */
/** What the host knows that the probes weigh: the boot type fbxen asked for (src/probes/pvh.ts), the vifs and round trip (netfront). */
export interface HostKnowledge {
  bootType?: { type: 'hvm' | 'pvh'; source: string } | undefined;
  net?: NetHostKnowledge | undefined;
  /** TEST-ONLY: the guest was the stand-in (standin-guest.ts): said in the report */
  standin?: string | undefined;
}

export async function verifyIntoArtifacts(bundle: Bundle, paths: { reportJson: string; reportJunit: string }, frameRun?: string, host: HostKnowledge = {}): Promise<Report> {
  // Loaded only when verifying, so booting does not depend on the probe code.
  const verify = await import('../verify/index.js');
  // The bundle inside must be this run's (a replayed old bundle is refused), and fbxen boot always attaches a CD drive.
  if (frameRun !== undefined) verify.checkBundleRun(bundle, { frameRun, what: `the console frame of run ${frameRun}` });
  const probed = verify.runProbes(bundle, { cdAttached: 'fbxen boot attached a CD drive to this domain', ...(host.bootType ? { bootType: host.bootType } : {}), net: host.net });
  const report = host.standin ? { ...probed, standin: host.standin } : probed;
  const junit = verify.renderJunit(report);
  await writeFileAtomic(paths.reportJson, `${JSON.stringify(verify.renderReportJson(report), null, 2)}\n`);
  await writeFileAtomic(paths.reportJunit, junit.endsWith('\n') ? junit : `${junit}\n`);
  return report;
}
