// Preload (node --import) that records every module URL the ESM loader loads into $FBXEN_MODULE_LOG.
// test/cli/startup.test.ts uses it to count what `fbxen --help` loads. CommonJS files required from
// inside a package do not pass the hook: counts are per package for dependencies.
import { register } from 'node:module';

register('./module-log-hooks.mjs', import.meta.url, { data: { file: process.env.FBXEN_MODULE_LOG } });
