// A probe steps every instruction of a slice — a HLT planted where each next instruction starts,
// caught when v86 reaches it — from the state at the slice's first boundary, fed the time reads the
// machine made while it ran the slice; after the last instruction and the slice's end (timers, then
// interrupts) it holds exactly what the machine held at the next boundary: the same registers, the
// same RAM, the same CPU state digest (all but v86's restart address for faults, which its JIT sets
// less often than its interpreter: see state-digest.ts). On the tiny guest (interrupts, port I/O,
// the PIT), recorded with v86's JIT; on linux's booting kernel (paging, page faults), recorded
// without it.
import { afterAll, describe, expect, it } from "vitest";
import { SliceProbe } from "../../hypervisor/slice-probe.js";
import { GuestDriver } from "../support/guest-driver.js";

const drivers: GuestDriver[] = [];
afterAll(() => drivers.forEach((d) => d.close()));

/**
 * Runs the next slice on the guest, taped, and steps it in a probe (a fresh one, or `reuse`
 * restored to the slice's start); returns what was compared.
 */
async function probeNextSlice(d: GuestDriver, reuse?: SliceProbe) {
  d.recorder.boundary(undefined);
  const machine = d.session.machine;
  const start = machine.captureCheckpoint({ forProbe: true });
  d.session.tape!.start();
  const r = d.session.driver.runSlice();
  const tape = d.session.tape!.stop();
  const slice = { start, tape, instructions: r.instructions };
  if (reuse) reuse.reload(slice);
  const probe = reuse ?? (await SliceProbe.open(d.loaded, slice, d.disk?.byteLength));
  try {
    probe.finish();
    return {
      instructions: r.instructions,
      registers: [probe.machine.registers(), machine.registers()],
      ram: [probe.machine.ramDigest(), machine.ramDigest()],
      digest: [probe.machine.digest({ ignorePreviousIp: true }), machine.digest({ ignorePreviousIp: true })],
      steps: probe.executed,
    };
  } finally {
    if (!reuse) probe.close();
  }
}

describe("stepping a whole slice in a probe", () => {
  it("tiny: lands on the next boundary's registers, RAM and state digest", async () => {
    const d = await GuestDriver.boot({ image: "tiny", tape: true });
    drivers.push(d);
    d.runUntil(/tiny> /);
    d.type("busy 40\r");
    d.runSlices(5);
    let kept: SliceProbe | undefined;
    for (let i = 0; i < 3; i++) {
      // the first on a fresh probe, the next two on one probe restored again (as a debugger does)
      if (i === 1) kept = await SliceProbe.open(d.loaded, { start: d.session.machine.captureCheckpoint({ forProbe: true }), tape: { now: [], epoch: [], random: [], randomU32: [] }, instructions: 0 }, d.disk?.byteLength);
      const p = await probeNextSlice(d, kept);
      expect(p.instructions).toBeGreaterThan(50_000);
      expect(p.steps).toBe(p.instructions);
      expect(p.registers[0]).toEqual(p.registers[1]);
      expect(p.ram[0]).toBe(p.ram[1]);
      expect(p.digest[0]).toBe(p.digest[1]);
    }
    kept?.close();
  }, 300_000);

  it("linux, recorded without the JIT: lands on the next boundary's state (its kernel booting, paging on)", async () => {
    // (with v86's JIT a block that faults counts all its instructions, the interpreter only those
    // it ran: a JIT recording of a kernel that takes page faults cannot be stepped exactly)
    const d = await GuestDriver.boot({ image: "linux", tape: true, jit: false });
    drivers.push(d);
    d.runSlices(250); // paging is on by then
    {
      const p = await probeNextSlice(d);
      expect(["paging", "pae"]).toContain(p.registers[1]!.mode);
      expect(p.instructions).toBeGreaterThan(50_000);
      expect(p.steps).toBe(p.instructions);
      expect(p.registers[0]).toEqual(p.registers[1]);
      expect(p.ram[0]).toBe(p.ram[1]);
      expect(p.digest[0]).toBe(p.digest[1]);
    }
  }, 300_000);
});
