import { configDefaults, defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // Each file in its own process: machines swap process globals while slices run.
    pool: "forks",
    testTimeout: 120_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    projects: [
      { extends: true, test: { name: "main", include: ["test/**/*.test.ts"], exclude: [...configDefaults.exclude, "test/lab/**", "test/web/**"], sequence: { groupOrder: 0 } } },
      // Hosts in network namespaces with timing-sensitive checks (no false failover on a lossy link):
      // after everything else, one file at a time, so that no other test's guests share the cores.
      { extends: true, test: { name: "lab", include: ["test/lab/**/*.test.ts"], fileParallelism: false, sequence: { groupOrder: 1 } } },
      // The web view in a real browser beside a demo pair (three nodes and Chromium): last, alone.
      { extends: true, test: { name: "browser", include: ["test/web/**/*.test.ts"], fileParallelism: false, sequence: { groupOrder: 2 } } },
    ],
  },
});
