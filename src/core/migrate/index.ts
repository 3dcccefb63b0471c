/** fbxen migrate-test: drivers (xl, XAPI), guest channels (console, ssh), the heartbeat, the report. */
export { migrateTest, renderMigratePlan, type MigrateTestRequest, type MigrateTestDeps, type MigrateTestOutcome } from './migrate-test.js';
export { renderMigrateText, renderMigrateJson, renderMigrateJunit, renderDowntimeSvg, migrateExitCode, oneLine, MAX_REASON_CHARS, summarize, type MigrateReport, type IterationResult, type IterationVerdict } from './report.js';
export { parseHeartbeat, estimateDowntime, formatBeat, formatInfo, formatDiskRound, beatCheck, type Beat, type DowntimeEstimate, type StampedLine } from './heartbeat.js';
export { ConsoleCapture } from './capture.js';
export { consoleChannel, sshChannel, GUEST_COLLECTOR, GUEST_HEARTBEAT, type ConsoleKeyboard, type SshTarget } from './channel.js';
export { MigrationError, MigrationTimeoutError, describeLocation, type DomainLocation, type GuestChannel, type MigrateMode, type GuestLoad } from './types.js';
