// The primary's disk I/O rules, against a backend whose operations we complete by hand: writes wait
// for the output rule, overlapping requests run in issue order, failures are retried with the guest
// paused, and nothing is lost.
import { describe, expect, it } from "vitest";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileDiskBackend, WriteNotStarted, type DiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { DiskScheduler } from "../../hypervisor/disk/disk-scheduler.js";

/** A backend whose operations stay in flight until the test settles them. */
class ManualBackend implements DiskBackend {
  readonly description = "manual";
  readonly bytes = 1 << 20;
  readonly ops: Array<{ op: "read" | "write"; offset: number; length: number; data?: Uint8Array; ok: (d?: Uint8Array) => void; fail: (e: Error) => void }> = [];
  read(offset: number, length: number): Promise<Uint8Array> {
    return new Promise((ok, fail) => this.ops.push({ op: "read", offset, length, ok: (d) => ok(d ?? new Uint8Array(length)), fail }));
  }
  write(offset: number, data: Uint8Array): Promise<void> {
    return new Promise((ok, fail) => this.ops.push({ op: "write", offset, length: data.length, data, ok: () => ok(), fail }));
  }
  async close(): Promise<void> {}
}

const read = (id: number, sector: number, sectors = 1): DiskRequest => ({ id, op: "read", offset: sector * 512, length: sectors * 512 });
const write = (id: number, sector: number, fill: number, sectors = 1): DiskRequest => ({ id, op: "write", offset: sector * 512, length: sectors * 512, data: new Uint8Array(sectors * 512).fill(fill) });
const tick = () => new Promise((r) => setImmediate(r));

function setup() {
  const backend = new ManualBackend();
  const done: string[] = [];
  const stalls: Array<string | undefined> = [];
  const timers: Array<() => void> = [];
  const s = new DiskScheduler(backend, {
    onRead: (id) => done.push(`r${id}`),
    onWrite: (id) => done.push(`w${id}`),
    onStall: (r) => stalls.push(r),
    setTimer: (fn) => timers.push(fn),
  });
  return { backend, s, done, stalls, timers };
}

describe("DiskScheduler", () => {
  it("holds a write until the output rule releases the slice that issued it; reads go at once", async () => {
    const { backend, s, done } = setup();
    s.submit([write(1, 10, 0xaa)], 5);
    s.submit([read(2, 20)], 5);
    expect(backend.ops.map((o) => o.op)).toEqual(["read"]);
    expect(s.heldWrites).toBe(1);
    s.release(4);
    expect(backend.ops.length).toBe(1);
    s.release(5);
    expect(backend.ops.map((o) => o.op)).toEqual(["read", "write"]);
    backend.ops[1]!.ok();
    backend.ops[0]!.ok();
    await tick();
    expect([...done].sort()).toEqual(["r2", "w1"]);
    expect(s.outstanding).toBe(0);
  });

  it("serialises overlapping requests in the order the guest issued them", async () => {
    const { backend, s, done } = setup();
    s.release(Number.POSITIVE_INFINITY);
    s.submit([write(1, 8, 1, 4), read(2, 10), write(3, 11, 3), read(4, 100)], 1);
    // the read of sector 10 and the write of sector 11 overlap the first write: only 1 and 4 run
    expect(backend.ops.map((o) => `${o.op}@${o.offset / 512}`)).toEqual(["write@8", "read@100"]);
    backend.ops[0]!.ok();
    await tick();
    // 2 and 3 do not overlap each other: both start once 1 is done
    expect(backend.ops.slice(2).map((o) => `${o.op}@${o.offset / 512}`)).toEqual(["read@10", "write@11"]);
    for (const o of backend.ops.slice(1)) o.ok();
    await tick();
    expect(done).toEqual(["w1", "r4", "r2", "w3"]);
  });

  it("retries a failed request with the guest paused, and loses nothing", async () => {
    const { backend, s, done, stalls, timers } = setup();
    s.release(Number.POSITIVE_INFINITY);
    s.submit([write(1, 0, 7)], 1);
    backend.ops[0]!.fail(new Error("EIO"));
    await tick();
    expect(s.stalled).toMatch(/write of 512 bytes at 0 on manual failed: EIO/);
    expect(stalls).toHaveLength(1);
    expect(done).toEqual([]);
    timers.shift()!(); // the retry
    expect(backend.ops).toHaveLength(2);
    expect(backend.ops[1]!.data![0]).toBe(7);
    backend.ops[1]!.ok();
    await tick();
    expect(done).toEqual(["w1"]);
    expect(s.stalled).toBeUndefined();
    expect(stalls).toEqual([expect.any(String), undefined]);
  });

  it("refuses a request outside the disk", () => {
    const { s } = setup();
    expect(() => s.submit([read(1, 4096)], 1)).toThrow(/outside the 1048576-byte disk/);
  });

  it("after close, issues nothing and drops completions", async () => {
    const { backend, s, done } = setup();
    s.submit([read(1, 0)], 1);
    s.close();
    s.release(10);
    s.submit([read(2, 1)], 2);
    backend.ops[0]!.ok();
    await tick();
    expect(backend.ops).toHaveLength(1);
    expect(done).toEqual([]);
  });
});

// A primary stopped (SIGSTOP, a frozen host) between the scheduler's lease check and the write
// itself — a write queued on the thread pool — wrote on waking, over newer data of the primary
// that took over. The lease is asked again at the last moment, in the same step as the pwrite.
describe("DiskScheduler and a lease that ends before a write starts", () => {
  it("does not write when the lease ended between the scheduler's check and the backend's start; the write waits for a new lease", async () => {
    let now = 0;
    const starts: Array<() => void> = [];
    const written: number[] = [];
    const stalls: Array<string | undefined> = [];
    // the backend starts each write later (a busy thread pool), asking the lease at that moment
    const backend: DiskBackend = {
      description: "late",
      bytes: 1 << 20,
      read: async (_o, length) => new Uint8Array(length),
      write: (offset, _data, mayStart) =>
        new Promise((ok, fail) =>
          starts.push(() => {
            if (mayStart && !mayStart()) return fail(new WriteNotStarted());
            written.push(offset);
            ok();
          }),
        ),
      close: async () => {},
    };
    const s = new DiskScheduler(backend, { onRead: () => {}, onWrite: () => {}, onStall: (r) => stalls.push(r), setTimer: () => {}, now: () => now });
    s.submit([write(1, 10, 0xaa)], 5);
    s.release(5, 100);
    expect(starts).toHaveLength(1);
    now = 5000; // stopped here, woken long after the lease
    starts.shift()!();
    await tick();
    expect(written).toEqual([]);
    expect(stalls).toEqual([]); // not a disk failure
    expect(s.heldWrites + s.outstanding).toBeGreaterThan(0);
    s.release(5, 6000); // still the primary after all: a fresh lease
    starts.shift()!();
    await tick();
    expect(written).toEqual([10 * 512]);
  });

  it("file backend: a write whose lease has ended leaves the file as it was", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-lease-"));
    const path = join(dir, "disk.img");
    writeFileSync(path, new Uint8Array(4096));
    const backend = await FileDiskBackend.open(path);
    try {
      await expect(backend.write(512, new Uint8Array(512).fill(7), () => false)).rejects.toBeInstanceOf(WriteNotStarted);
      expect(readFileSync(path).subarray(512, 1024).every((b) => b === 0)).toBe(true);
      await backend.write(512, new Uint8Array(512).fill(7), () => true);
      expect(readFileSync(path).subarray(512, 1024).every((b) => b === 7)).toBe(true);
    } finally {
      await backend.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
