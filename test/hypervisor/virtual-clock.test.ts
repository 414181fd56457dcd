import { describe, expect, it } from "vitest";
import { rtcPhaseMs, VirtualClock } from "../../hypervisor/virtual-clock.js";

function clockAt(icount: { n: number }) {
  const c = new VirtualClock({ epochMs: 1_700_000_000_000, msPerInstruction: 1e-5, seed: 7 });
  c.attach(() => icount.n);
  return c;
}

describe("VirtualClock", () => {
  it("is a function of the instruction count", () => {
    const ic = { n: 0 };
    const c = clockAt(ic);
    ic.n = 100_000;
    expect(c.nowMs()).toBeCloseTo(1, 9);
    ic.n = 300_000;
    expect(c.nowMs()).toBeCloseTo(3, 9);
  });

  it("is strictly increasing per read, even at the same instruction count", () => {
    const ic = { n: 5 };
    const c = clockAt(ic);
    let last = -1;
    for (let i = 0; i < 1000; i++) {
      const t = c.nowMs();
      expect(t).toBeGreaterThan(last);
      last = t;
    }
  });

  it("advances forward only", () => {
    const c = clockAt({ n: 0 });
    c.advance(10);
    expect(c.peekMs()).toBe(10);
    expect(() => c.advance(-1)).toThrow();
    expect(() => c.advance(Number.NaN)).toThrow();
  });

  it("keeps time continuous across a rate change", () => {
    const ic = { n: 200_000 };
    const c = clockAt(ic);
    const before = c.timeAt(200_000);
    c.setRate(2e-5, 200_000);
    expect(c.timeAt(200_000)).toBeCloseTo(before, 12);
    expect(c.timeAt(300_000) - before).toBeCloseTo(2, 9);
  });

  it("gives the guest an epoch clock and a seeded generator that replays exactly", () => {
    const a = clockAt({ n: 0 });
    const b = clockAt({ n: 0 });
    a.advance(1500);
    expect(a.epochMs()).toBe(1_700_000_001_500 + rtcPhaseMs);
    const seqA = Array.from({ length: 5 }, () => a.randomU32());
    const seqB = Array.from({ length: 5 }, () => b.randomU32());
    expect(seqA).toEqual(seqB);
    expect(new Set(seqA).size).toBe(5);
    const r = a.random();
    expect(r).toBeGreaterThanOrEqual(0);
    expect(r).toBeLessThan(1);
  });

  it("saves and restores its whole state", () => {
    const ic = { n: 1234 };
    const a = clockAt(ic);
    a.advance(3);
    a.nowMs();
    a.randomU32();
    const saved = a.save();
    const b = clockAt(ic);
    b.restore(saved);
    expect(b.nowMs()).toBe(a.nowMs());
    expect(b.randomU32()).toBe(a.randomU32());
  });
});
