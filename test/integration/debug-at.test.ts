// `lockstep debug FILE --at SLICE`: a recording replayed to a boundary shows the registers and the
// memory the original machine had there — on the tiny guest (no paging) and on linux (addresses
// translated through its page tables, read-only); a boundary past the end and an unmapped address
// are refused with their codes.
import { afterAll, describe, expect, it } from "vitest";
import type { LockstepError } from "../../emulator/lockstep-error.js";
import { debugAt } from "../../ft/cli/debug-command.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { buildHeader, diskInfoOf } from "../../hypervisor/log-header.js";
import { runCli } from "../support/cli.js";
import { GuestDriver } from "../support/guest-driver.js";
import { writeRecording } from "../support/record-replay.js";

const drivers: GuestDriver[] = [];
afterAll(() => drivers.forEach((d) => d.close()));

/** Boots `image`, brings it to `ready`, and records; returns the driver and its entries so far. */
async function recorded(image: "tiny" | "linux", ready: (d: GuestDriver) => void) {
  const entries: LogEntry[] = [];
  const d = await GuestDriver.boot({ image, digestEverySlices: 50, onEntry: (e) => entries.push(e) });
  drivers.push(d);
  ready(d);
  d.runSlices(3);
  d.recorder.progress(); // the log is complete through this boundary (as a live recorder logs every 100 ms)
  return { d, entries };
}

function save(name: string, d: GuestDriver, entries: LogEntry[]): string {
  const header = buildHeader({ loaded: d.loaded, disk: d.disk ? diskInfoOf(d.disk) : undefined, clock: d.session.clock.params, digestEverySlices: 50, recordedAt: new Date() });
  return writeRecording(name, header, entries);
}

const codeOf = (e: unknown) => (e as LockstepError).code;

describe("lockstep debug --at", () => {
  it("shows the registers and memory the tiny machine had at that boundary", async () => {
    const { d, entries } = await recorded("tiny", (g) => {
      g.runUntil(/tiny> /);
      g.command("ping", "pong");
    });
    const at = d.session.driver.slice;
    const registers = d.session.machine.registers();
    const code = Buffer.from(d.session.machine.readLinear(0x100000, 32)).toString("hex");
    const file = save("debug-tiny.lslog", d, entries);
    const report = await debugAt({ file, at, memory: ["0x100000:32"] });
    expect(report.slice).toBe(at);
    expect(report.registers).toEqual(registers);
    expect(report.registers.mode).toBe("protected");
    expect(report.memory).toEqual([{ address: 0x100000, bytes: code }]);

    // the CLI: a table, and past the end a clear error
    const cli = runCli(["debug", file, "--at", String(at), "--memory", "0x100000:16"]);
    expect(cli.status, cli.stderr).toBe(0);
    expect(cli.stdout).toMatch(new RegExp(`^eip\\s+0x${registers.eip.toString(16).padStart(8, "0")}$`, "m"));
    expect(cli.stdout).toMatch(/^0x00100000: {2}[0-9a-f]{2}( [0-9a-f]{2}){15}/m);
    const past = runCli(["debug", file, "--at", String(at + 100_000)]);
    expect(past.status).toBe(2);
    expect(past.stderr).toMatch(/LOCKSTEP_ERR_PAST_END: The recording ends at slice \d+/);
    expect(runCli(["debug", file, "--at", "5", "--memory", "nowhere"]).stderr).toMatch(/LOCKSTEP_ERR_USAGE: --memory "nowhere" is not ADDR\[:LEN\]/);
  }, 120_000);

  it("translates virtual addresses through linux's page tables (read-only) and refuses an unmapped one", async () => {
    const { d, entries } = await recorded("linux", (g) => g.runUntil(/lockstep:\/root# /, 400_000));
    const at = d.session.driver.slice;
    const registers = d.session.machine.registers();
    expect(["paging", "pae"]).toContain(registers.mode);
    const file = save("debug-linux.lslog", d, entries);
    // the kernel's direct map: virtual 0xC0000000 + p is physical p
    const physical = (d.session.machine as unknown as { cpu: { mem8: Uint8Array } }).cpu.mem8;
    const report = await debugAt({ file, at, memory: ["0xc0100000:256", "0xc0ffff80:256"] });
    expect(report.registers).toEqual(registers);
    expect(report.memory[0]!.bytes).toBe(Buffer.from(physical.subarray(0x100000, 0x100100)).toString("hex"));
    expect(report.memory[1]!.bytes).toBe(Buffer.from(physical.subarray(0xffff80, 0x1000080)).toString("hex")); // across a page boundary
    // page 0 is never mapped (mmap_min_addr): the read debugAt makes refuses it with its code
    let unmapped: unknown;
    try {
      d.session.machine.readLinear(0, 4);
    } catch (e) {
      unmapped = e;
    }
    expect(codeOf(unmapped)).toBe("LOCKSTEP_ERR_ADDRESS_UNMAPPED");
    // looking changes nothing (no accessed bit, no TLB entry, no page fault): the machine's digest stays
    const before = d.session.machine.digest();
    d.session.machine.readLinear(0xc0100000, 8192);
    expect(() => d.session.machine.readLinear(0, 4)).toThrow(/not mapped/);
    d.session.machine.registers();
    expect(d.session.machine.digest()).toBe(before);
  }, 300_000);
});
