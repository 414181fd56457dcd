// until: resolves once the check holds, treats a throwing check as "not yet", and builds its
// description only when it times out.
import { describe, expect, it } from "vitest";
import { until } from "../../ft/runtime/until.js";

describe("until", () => {
  it("resolves once the check holds, retrying checks that throw", async () => {
    let calls = 0;
    let described = 0;
    await until(
      () => {
        calls++;
        if (calls === 1) throw new Error("not up yet");
        return calls >= 3;
      },
      60_000,
      () => `described ${++described}`,
      1,
    );
    expect(calls).toBe(3);
    expect(described).toBe(0);
  });

  it("rejects with the description and the last error of the check", async () => {
    let described = 0;
    const failing = until(
      async () => {
        throw new Error("connection refused");
      },
      30,
      () => `the node ${++described}`,
      1,
    );
    await expect(failing).rejects.toThrow(/timed out after 30 ms waiting for the node 1 \(the last check threw: connection refused\)/);
    expect(described).toBe(1);
    await expect(until(() => false, 10, "a string", 1)).rejects.toThrow(/waiting for a string$/);
  });
});
