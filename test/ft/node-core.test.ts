// NodeCore: a joining backup whose checkpoint never arrived whole asks for another one (the
// simulation found joins that waited for good once a part was lost).
import { describe, expect, it } from "vitest";
import { checkpointRetryMs, NodeCore, type NodeEffect } from "../../ft/core/node-core.js";
import { notEligible } from "../../ft/core/primary-core.js";
import type { LogHeader } from "../../hypervisor/log-file.js";

const header = { recordedAt: "test" } as unknown as LogHeader;
const failureTimeoutMs = 150;
const config = { nodeId: "A", heartbeatIntervalMs: 20, failureTimeoutMs, primary: { unackedEntriesMax: 400, lagSlicesMax: 50 } };

describe("a joining backup", () => {
  it("asks again for a checkpoint when no part came for a while", () => {
    const core = new NodeCore({ ...config, nodeId: "B", join: true });
    core.startBackup();
    const hellos: number[] = [];
    const note = (t: number, effects: NodeEffect[]) => {
      for (const e of effects) if (e.type === "send" && e.message.type === "hello" && e.message.join) hellos.push(t);
    };
    note(0, core.peerConnected(0));
    note(5, core.peerMessage({ type: "header", epoch: 1, nodeId: "A", header, releasedThrough: notEligible }, 5));
    for (let t = 10; t <= 1000; t += 10) {
      note(t, core.peerMessage({ type: "heartbeat", epoch: 1, nodeId: "A" }, t));
      // one part of a checkpoint in two arrives at 200; the other is lost
      if (t === 200) note(t, core.peerMessage({ type: "checkpoint", epoch: 1, first: 5, slice: 3, part: 0, parts: 2, data: new Uint8Array([1]), console: 0, inputs: [] }, t));
      note(t, core.tick(t, 0));
    }
    const retry = checkpointRetryMs(failureTimeoutMs);
    expect(hellos[0]).toBe(0);
    expect(hellos[1]).toBeGreaterThan(200 + retry);
    expect(hellos[1]).toBeLessThanOrEqual(200 + retry + 10);
    expect(core.backup!.state).toBe("following");
  });
});
