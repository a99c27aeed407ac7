import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["**/*.test.ts"],
    exclude: ["node_modules/**", "data/**"],
    // Two cores: the suite is I/O-bound; forks isolate native handles and file locks.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // One single-host Ceph for the rados backend's tests, when CI=true or OKEANOS_TEST_CEPH=1.
    globalSetup: ["engine/blocker/rados/testing/global-setup.ts"],
  },
});
