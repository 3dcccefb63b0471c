import { defineConfig } from 'vitest/config';

const shared = {
  // Image tests spawn real checkers (sgdisk, grub-fstest, qemu-img); give them room on a 2-core machine.
  testTimeout: 120_000,
  hookTimeout: 120_000,
  pool: 'forks' as const,
  env: { NO_COLOR: '1' },
};

export default defineConfig({
  test: {
    globalSetup: ['test/support/global-tmp.ts'],
    projects: [
      // Everything, two files at a time.
      { test: { ...shared, name: 'main', include: ['test/**/*.test.ts'], exclude: ['test/**/*.timing.test.ts'], maxWorkers: 2 } },
      // Tests that measure time on the host: run after the main project, one file at a time, so that no
      // other test loads the machine under them (`npm test` runs the two projects in turn).
      { test: { ...shared, name: 'timing', include: ['test/**/*.timing.test.ts'], maxWorkers: 1 } },
    ],
  },
});
