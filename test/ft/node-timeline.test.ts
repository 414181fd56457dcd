// The node's timeline (shown by the web view): the events a person watching the pair wants, derived
// from changes of role, epoch and state, bounded.
import { describe, expect, it } from "vitest";
import { NodeTimeline, type TimelineSnapshot } from "../../ft/core/node-timeline.js";

const snap = (s: Partial<TimelineSnapshot>): TimelineSnapshot => ({ role: "backup", epoch: 0, state: "waiting", backup: null, haltReason: null, ...s });

describe("NodeTimeline", () => {
  it("tells a backup's life: started, following, primary lost, took over, protected again, halted", () => {
    const t = new NodeTimeline();
    let at = 1000;
    const see = (s: Partial<TimelineSnapshot>) => t.observe(snap(s), at++);
    see({});
    see({ state: "following", epoch: 1 });
    see({ state: "following", epoch: 1 }); // nothing changed: nothing said
    see({ state: "claiming", epoch: 1 });
    see({ role: "primary", state: "unprotected", epoch: 2 });
    see({ role: "primary", state: "joining", epoch: 2, backup: "C" });
    see({ role: "primary", state: "protected", epoch: 2, backup: "C" });
    see({ role: "primary", state: "unprotected", epoch: 2 });
    see({ role: "halted", state: "halted", epoch: 2, haltReason: "a newer epoch 3 exists" });
    see({ role: "halted", state: "halted", epoch: 2, haltReason: "a newer epoch 3 exists" });
    expect(t.recent().map((e) => [e.kind, e.text])).toEqual([
      ["started", "started as backup"],
      ["joined", "following the primary"],
      ["peer-failed", "primary lost: claiming epoch 2"],
      ["took-over", "took over as primary (epoch 2)"],
      ["joined", "backup C joining"],
      ["protected", "protected by C"],
      ["peer-failed", "backup C lost: unprotected"],
      ["halted", "halted: a newer epoch 3 exists"],
    ]);
    const seqs = t.recent().map((e) => e.seq);
    expect(seqs).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(t.recent()[0]!.atMs).toBe(1000);
  });

  it("keeps the newest events only", () => {
    const t = new NodeTimeline(5);
    for (let i = 0; i < 20; i++) t.observe(snap({ role: "primary", epoch: 1 + i, state: "unprotected" }), i);
    const kept = t.recent();
    expect(kept).toHaveLength(5);
    expect(kept.at(-1)!.text).toBe("epoch 20");
    expect(kept[0]!.seq).toBe(16);
  });
});
