/** The fbxen lab: a real Xen under QEMU (docs/lab.md). */
export { labDown, labSsh, labStatus, labUp, sshCommandLine, type LabDeps, type LabDownResult, type LabStatus, type LabUpRequest, type LabUpResult } from './lab.js';
export { defaultLabDir, labPaths } from './paths.js';
export { resolveLabTarget, sessionTarget, sshArgs, type LabSshTarget } from './target.js';
