/** fbxen verify: read a bundle (directory, tar, console log, ssh), run the probes, render the report. */
export { type Bundle, type IndexEntry, readBundle, packBundle, bundleFromTarBytes, bundleFromFiles, parseMeta, parseIndex, BUNDLE_FORMAT, RUN_ID } from './bundle.js';
export { type ConsoleExtraction, encodeConsoleFrame, extractBundleFromConsole, FRAME_LINE_WIDTH } from './console-frame.js';
export { type Report, type ProbeResult, runProbes, reportExitCode, renderReportText, renderReportJson, renderJunit } from './report.js';
export {
  type EvidenceSource,
  type HostKeyChecking,
  type VerifyRequest,
  type VerifyDeps,
  type VerifyOutcome,
  verify,
  verifyDomain,
  loadEvidence,
  bundleFromConsoleLog,
  checkBundleRun,
  sshArgs,
  newManualRunId,
  DEFAULT_COLLECTOR,
} from './verify.js';
