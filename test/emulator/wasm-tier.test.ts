// The wasm compiler tier is one per process: asking for the other one later is a usage error, and
// LOCKSTEP_WASM_TIER is checked.
import { describe, expect, it } from "vitest";
import { configuredWasmTier, useWasmTier } from "../../emulator/wasm-tier.js";
import { LockstepError } from "../../emulator/lockstep-error.js";

describe("wasm tier", () => {
  it("is set once per process; the other tier later is refused", () => {
    useWasmTier("baseline");
    useWasmTier("baseline");
    expect(() => useWasmTier("optimizing")).toThrow(LockstepError);
    expect(() => useWasmTier("optimizing")).toThrow(/already runs machines with the baseline wasm compiler/);
  });

  it("reads LOCKSTEP_WASM_TIER, and refuses a value it does not know", () => {
    const saved = process.env.LOCKSTEP_WASM_TIER;
    try {
      delete process.env.LOCKSTEP_WASM_TIER;
      expect(configuredWasmTier()).toBe("baseline");
      process.env.LOCKSTEP_WASM_TIER = "optimizing";
      expect(configuredWasmTier()).toBe("optimizing");
      process.env.LOCKSTEP_WASM_TIER = "turbo";
      expect(() => configuredWasmTier()).toThrow(/LOCKSTEP_WASM_TIER must be one of baseline, optimizing/);
    } finally {
      if (saved === undefined) delete process.env.LOCKSTEP_WASM_TIER;
      else process.env.LOCKSTEP_WASM_TIER = saved;
    }
  });
});
