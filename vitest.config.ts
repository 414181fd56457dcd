import { configDefaults, defineConfig } from "vitest/config";

/**
 * Files that run one machine (or none) and assert nothing about timing: deterministic record and
 * replay, checkpoints, codecs, the simulation. Two of them run at once, one per core. Everything
 * else — pairs with failure timeouts, pacing to the wall clock, real etcd leases, terminals — runs
 * one file at a time so that no other test's guests share the cores with its nodes. A new file
 * runs alone unless it is listed here.
 */
const solo = [
  "test/ft/**/*.test.ts",
  "test/hypervisor/**/*.test.ts",
  "test/emulator/**/*.test.ts",
  "test/cli/{bad-input,record-replay-errors,replay-from}.test.ts",
  "test/integration/{boot-images,checkpoint,debug-at,determinism-linux,gdb-replay,slice-probe,determinism-tiny,disk-replay,linux-guest,net-guest,net-record,no-host-time,tiny-guest,vga-graphics}.test.ts",
];
/** Of those, the ones with real timers against real servers (etcd leases, passt, an NBD server that stalls): alone too. */
const timed = ["test/ft/{etcd-arbiter,console-client,net-link}.test.ts", "test/hypervisor/nbd-client-faults.test.ts"];

export default defineConfig({
  test: {
    // Each file in its own process: machines swap process globals while slices run.
    pool: "forks",
    maxWorkers: 2,
    // a guard against hangs, not a speed bound: two files share the cores on a loaded machine
    testTimeout: 300_000,
    hookTimeout: 120_000,
    reporters: ["default"],
    projects: [
      { extends: true, test: { name: "solo", include: solo, exclude: [...configDefaults.exclude, ...timed], sequence: { groupOrder: 0 } } },
      { extends: true, test: { name: "timed", include: timed, fileParallelism: false, sequence: { groupOrder: 1 } } },
      { extends: true, test: { name: "main", include: ["test/**/*.test.ts"], exclude: [...configDefaults.exclude, ...solo, "test/lab/**", "test/web/**"], fileParallelism: false, sequence: { groupOrder: 2 } } },
      // Hosts in network namespaces with timing-sensitive checks (no false failover on a lossy link):
      // after everything else, one file at a time.
      { extends: true, test: { name: "lab", include: ["test/lab/**/*.test.ts"], fileParallelism: false, sequence: { groupOrder: 3 } } },
      // The web view in a real browser beside a demo pair (three nodes and Chromium): last, alone.
      { extends: true, test: { name: "browser", include: ["test/web/**/*.test.ts"], fileParallelism: false, sequence: { groupOrder: 4 } } },
    ],
  },
});
