/** Runs the built `lockstep` CLI (npm test builds it first) as a separate process. */
import { spawnSync, type SpawnSyncReturns } from "node:child_process";
import { join } from "node:path";
import { packageRoot } from "../../emulator/package-root.js";

export const cliPath = join(packageRoot(), "dist", "ft", "cli", "main.js");

export function runCli(args: string[], options: { input?: string; timeoutMs?: number; cwd?: string } = {}): SpawnSyncReturns<string> {
  return spawnSync(process.execPath, [cliPath, ...args], {
    encoding: "utf8",
    input: options.input ?? "",
    timeout: options.timeoutMs ?? 60_000,
    cwd: options.cwd ?? packageRoot(),
    env: { ...process.env, LOCKSTEP_LOG_LEVEL: "warn" },
  });
}
