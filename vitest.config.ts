import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    pool: 'forks',
    // One file at a time: the namespace labs, the HA pair and the docker lab each load both
    // cores of this machine; run side by side they starve each other's timing-sensitive tests.
    fileParallelism: false,
  },
});
