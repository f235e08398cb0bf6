import { defineConfig } from "vitest/config"

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/globalSetup.ts"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Worker threads and real servers per test file: two cores, so keep file parallelism modest.
    maxWorkers: 2,
    minWorkers: 1
  }
})
