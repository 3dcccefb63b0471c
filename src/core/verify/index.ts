/** fbxen verify: read a bundle (directory, tar, console log, ssh), run the probes, render the report. */
export { type Bundle, type IndexEntry, readBundle, packBundle, bundleFromTarBytes, parseMeta, parseIndex, BUNDLE_FORMAT, RUN_ID } from './bundle.js';
export { type ConsoleExtraction, encodeConsoleFrame, extractBundleFromConsole, FRAME_LINE_WIDTH } from './console-frame.js';
export { type Report, type ProbeResult, runProbes, reportExitCode, renderReportText, renderReportJson, renderJunit } from './report.js';
