// Nothing on the guest's path reads real time or randomness: every host source is wrapped with a
// counter before v86 is even imported, and a linux boot plus a timing-heavy tiny session count zero
// calls while slices run. (Outside slices the host may use them freely: pino, ws, timers.)
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { webcrypto } from "node:crypto";

let inSlice = false;
const calls: Record<string, number> = {};
const restore: Array<() => void> = [];

function count<T extends object, K extends keyof T>(obj: T, key: K, name: string): void {
  const real = obj[key] as unknown as (...a: unknown[]) => unknown;
  const wrapped = function (this: unknown, ...args: unknown[]) {
    if (inSlice) calls[name] = (calls[name] ?? 0) + 1;
    return real.apply(this, args);
  };
  Object.assign(wrapped, real);
  (obj as Record<K, unknown>)[key] = wrapped;
  restore.push(() => {
    (obj as Record<K, unknown>)[key] = real;
  });
}

beforeAll(() => {
  count(Date, "now", "Date.now");
  count(Math, "random", "Math.random");
  count(performance, "now", "performance.now");
  count(process, "hrtime", "process.hrtime");
  count(process.hrtime, "bigint", "process.hrtime.bigint");
  count(webcrypto, "getRandomValues", "crypto.getRandomValues");
  const RealDate = Date;
  // `new Date()` with no argument reads the host clock too
  const Counting = function (this: unknown, ...args: unknown[]) {
    if (inSlice && args.length === 0) calls["new Date()"] = (calls["new Date()"] ?? 0) + 1;
    return new.target ? new (RealDate as any)(...args) : (RealDate as any)(...args);
  } as unknown as DateConstructor;
  Object.setPrototypeOf(Counting, RealDate);
  (Counting as any).prototype = RealDate.prototype;
  (Counting as any).now = Date.now;
  globalThis.Date = Counting;
  restore.push(() => {
    globalThis.Date = RealDate;
  });
});

afterAll(() => {
  for (const r of restore.reverse()) r();
});

describe("host time and randomness during slices", () => {
  it("are never read by the guest's path", async () => {
    // imported only now, after the wrappers: v86 binds performance.now when it loads
    const { GuestDriver } = await import("../support/guest-driver.js");
    const { SliceDriver } = await import("../../hypervisor/slice-driver.js");
    const realRunSlice = SliceDriver.prototype.runSlice;
    SliceDriver.prototype.runSlice = function (this: InstanceType<typeof SliceDriver>) {
      inSlice = true;
      try {
        return realRunSlice.call(this);
      } finally {
        inSlice = false;
      }
    };
    try {
      const tiny = await GuestDriver.boot({ image: "tiny" });
      tiny.runUntil("tiny> ");
      for (const cmd of ["tsc", "pit", "rtc", "ticks", "sleep 20", "busy 40", "memsum"]) tiny.command(cmd, "tiny> ");
      tiny.close();
      const linux = await GuestDriver.boot({ image: "linux", disk: "fresh" });
      linux.runUntil(/lockstep:\/root# /);
      linux.command("date; sleep 1; echo d''one", "done");
      linux.close();
      let slicesRun = 0;
      // the wrappers do count when armed: prove the probe works
      inSlice = true;
      Date.now();
      Math.random();
      performance.now();
      inSlice = false;
      expect(calls).toEqual({ "Date.now": 1, "Math.random": 1, "performance.now": 1 });
      slicesRun = tiny.session.driver.slice + linux.session.driver.slice;
      expect(slicesRun).toBeGreaterThan(1000);
    } finally {
      SliceDriver.prototype.runSlice = realRunSlice;
    }
  });
});
