/**
 * The import graph's rules (docs/architecture.md explains them): layers from the entry point down to
 * core/util, no upward import, no cycle, no command importing another. Run by `npm run lint:deps` and by
 * scripts/test.sh before the tests. Type-only imports count (tsPreCompilationDeps): a type cycle is still
 * a cycle for the reader and for tsc.
 */

/** Top to bottom. A module may import its own layer's modules and any layer below it, never one above. */
const LAYERS = [
  { name: 'entry', path: '^src/(cli|program)\\.ts$' },
  { name: 'commands', path: '^src/commands/' },
  { name: 'ui', path: '^src/ui/' },
  { name: 'flow migrate', path: '^src/core/migrate/' },
  { name: 'flow boot', path: '^src/core/boot/' },
  { name: 'flow verify', path: '^src/core/verify/' },
  { name: 'probes', path: '^src/probes/' },
  { name: 'flow build', path: '^src/core/imaging/' },
  { name: 'image libraries', path: '^src/core/(ufs2|formats|iso|kernel)/' },
  { name: 'toolstack drivers', path: '^src/core/toolstack/' },
  { name: 'lab', path: '^src/core/lab/' },
  { name: 'run artifacts', path: '^src/core/run/' },
  { name: 'network', path: '^src/core/net/' },
  { name: 'base', path: '^src/core/(exec/|[^/]+\\.ts$)' },
  { name: 'util', path: '^src/core/util/' },
];

/** Files of src/commands/ that are shared helpers, not commands (index.ts is the registry that loads them). */
const COMMAND_HELPERS = '^src/commands/(index|context|options|defaults|boot-options|lab-host)\\.ts$';

// util has its own, stricter rule below (nothing of fbxen at all).
const upward = LAYERS.slice(1, -1).map((layer, i) => ({
  name: `no-upward-from-${layer.name.replace(/ /g, '-')}`,
  comment: `${layer.name} may not import ${LAYERS.slice(0, i + 1).map((l) => l.name).join(', ')} (layers above it)`,
  severity: 'error',
  from: { path: layer.path },
  to: { path: LAYERS.slice(0, i + 1).map((l) => l.path) },
}));

module.exports = {
  forbidden: [
    {
      name: 'no-cycle',
      comment: 'no import cycle anywhere, type-only ones included',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
    ...upward,
    {
      name: 'util-imports-no-fbxen-module',
      comment: 'src/core/util/ is leaf code: it imports Node and packages only',
      severity: 'error',
      from: { path: '^src/core/util/' },
      to: { path: '^src/', pathNot: '^src/core/util/' },
    },
    {
      name: 'no-command-imports-a-command',
      comment: 'a command shares code through the helpers (options, context, defaults, boot-options), not by importing another command',
      severity: 'error',
      from: { path: '^src/commands/', pathNot: '^src/commands/index\\.ts$' },
      to: { path: '^src/commands/', pathNot: COMMAND_HELPERS },
    },
    {
      name: 'commands-reach-drivers-through-flows',
      comment: 'command -> flow -> driver: a command never imports a toolstack driver itself',
      severity: 'error',
      from: { path: '^src/commands/' },
      to: { path: '^src/core/toolstack/' },
    },
    {
      name: 'no-driver-imports-another-driver',
      comment: 'each toolstack driver is the only place that knows its toolstack',
      severity: 'error',
      from: { path: '^src/core/toolstack/([^/]+)/' },
      // the interface both implement, src/core/toolstack/*.ts, is shared
      to: { path: '^src/core/toolstack/', pathNot: '^src/core/toolstack/($1/|[^/]+\\.ts$)' },
    },
    {
      name: 'no-unresolvable',
      comment: 'an import that resolves to nothing (a typo, or a path built at run time)',
      severity: 'error',
      from: {},
      to: { couldNotResolve: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    exclude: { path: '^(dist|node_modules)/' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default', 'types'], extensions: ['.ts', '.js', '.d.ts'] },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
