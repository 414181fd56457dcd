/**
 * Which V8 compiler turns WebAssembly into machine code: v86 itself is a wasm module, and its JIT
 * emits a small wasm module for every block of hot guest code, thousands of them while a guest boots.
 *
 *   "baseline"   Liftoff only, the single-pass compiler (the default here).
 *   "optimizing" V8's default: Liftoff first, then each hot function again by TurboFan, on
 *                background threads.
 *
 * Measured with v86 0.5.462 on a 2-core host, every workload ran faster on the baseline compiler:
 * the linux boot 2.6 vs 3.8 s, the shell loop 3.9 vs 4.5 s, the tiny busy loop 0.23 vs 0.35 s. The
 * generated modules are small and short-lived, so TurboFan's compiles cost more than they save, and
 * its background threads take the CPU from the machine and (in a pair) from its node's I/O. For
 * lockstep there is one more reason: a function's tier then never depends on host timing.
 *
 * V8's flags are process-wide, so the tier is one per process: the first machine sets it, and a
 * machine that asks for the other tier later in the same process is refused. The CLI's
 * `--wasm-tier` sets LOCKSTEP_WASM_TIER, which machine threads and node processes it starts inherit.
 */
import { setFlagsFromString } from "node:v8";
import { ErrorCode, LockstepError } from "./lockstep-error.js";

export type WasmTier = "baseline" | "optimizing";
export const wasmTiers: readonly WasmTier[] = ["baseline", "optimizing"];

let current: WasmTier | undefined;

/** The tier asked for by LOCKSTEP_WASM_TIER, else the baseline compiler. */
export function configuredWasmTier(): WasmTier {
  const v = process.env.LOCKSTEP_WASM_TIER;
  if (v === undefined || v === "") return "baseline";
  if (!(wasmTiers as readonly string[]).includes(v)) throw new LockstepError(ErrorCode.usage, `LOCKSTEP_WASM_TIER must be one of ${wasmTiers.join(", ")}, not "${v}"`);
  return v as WasmTier;
}

/** Sets V8's wasm compiler tier for this process (before the first machine compiles anything). */
export function useWasmTier(tier: WasmTier): void {
  if (current === tier) return;
  if (current !== undefined) {
    throw new LockstepError(ErrorCode.usage, `this process already runs machines with the ${current} wasm compiler, not ${tier}`, "use one --wasm-tier per process");
  }
  setFlagsFromString(tier === "baseline" ? "--liftoff-only" : "--no-liftoff-only");
  current = tier;
}
