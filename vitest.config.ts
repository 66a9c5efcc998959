import { defineConfig } from 'vitest/config';

/** The namespace labs, the HA pair, the cluster and the docker lab: each loads both cores of
 * this machine, and run side by side they starve each other's timing-sensitive tests. */
const LABS = ['test/netns/**/*.test.ts', 'test/docker/**/*.test.ts'];

/** What both groups share (a project does not take these from the root config unless told). */
const common = { testTimeout: 120_000, pool: 'forks' } as const;

export default defineConfig({
  test: {
    projects: [
      {
        // Everything else first, two files at a time (one per core): the longest (ha_node,
        // mostly waiting on Redis and its timers) no longer holds the rest up.
        test: {
          ...common,
          name: 'unit',
          include: ['test/**/*.test.ts'],
          exclude: LABS,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
        },
      },
      {
        // Then the labs, one file at a time, with nothing else running.
        test: { ...common, name: 'labs', include: LABS, fileParallelism: false, sequence: { groupOrder: 1 } },
      },
    ],
  },
});
