export { createUfs2Writer, leadingLaneBytes } from './writer.js';
export { createFileBlockTarget, type FileBlockTarget } from './target.js';
export { estimateUfs2Size, type ContentSize } from './estimate.js';
export { computeGeometry, type Geometry } from './geometry.js';
export * from './types.js';
