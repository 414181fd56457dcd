// The tiny guest recorded live (paced to wall time, serial and keyboard input arriving while it
// idles) replays bit-identically; a tampered log or a perturbed machine is a divergence that names
// its slice.
import { beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";
import { until } from "../../ft/runtime/until.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { headerFor, readRecording, replayEntries, writeRecording } from "../support/record-replay.js";

const digestEvery = 25;
let header: LogHeader;
let entries: LogEntry[];
let recordedSerial = "";
let recordedEnd: { slice: number; icount: number };

async function recordTinyLive(): Promise<void> {
  header = headerFor("tiny", { epochMs: Date.UTC(2026, 10, 22, 8, 0, 0), msPerInstruction: 1e-5, seed: 42 }, digestEvery);
  const disk = makeBlankDisk(loadMachine("tiny").config.disk!);
  const recorded: LogEntry[] = [];
  const decoder = new TextDecoder();
  // recorded the way `lockstep record` records: on a machine thread, paced to wall time
  const machine = await RecordingMachine.start({
    image: "tiny",
    clock: header.clock,
    paced: true,
    digestEverySlices: digestEvery,
    disk,
    onEntries: (e) => recorded.push(...e),
    onOutput: (data) => (recordedSerial += decoder.decode(data)),
  });
  const waitFor = (text: string, from: number) => until(() => recordedSerial.indexOf(text, from) >= 0, 5000, () => `tiny never printed ${text}: ${recordedSerial}`, 5);
  const say = async (cmd: string, expected: string) => {
    const from = recordedSerial.length;
    machine.type(new TextEncoder().encode(cmd + "\r"));
    await waitFor(expected, from);
  };
  await waitFor("tiny> ", 0);
  await say("ping", "pong");
  machine.keys(Uint8Array.from([0x1e, 0x9e, 0x30, 0xb0]));
  await waitFor("kbd B0", 0);
  await say("sleep 14", "slept");
  await say("tsc", "delta");
  await say("pit", "pit ");
  await say("rtc", "rtc ");
  await say("write 7 5a", "wrote");
  await say("read 7", "sector");
  await say("busy 200", "busy ticks");
  await say("memsum", "memsum ");
  await machine.stop();
  recordedEnd = { slice: machine.slice, icount: machine.icount };
  // through the real file format
  entries = readRecording(writeRecording("tiny.lslog", header, recorded)).entries;
}

describe("deterministic record and replay: tiny", () => {
  beforeAll(recordTinyLive, 60_000);

  it("recorded clock adjustments, serial and keyboard input and digests", () => {
    const kinds = new Set(entries.map((e) => e.kind));
    for (const k of ["clock", "serial", "keys", "digest", "control"]) expect(kinds).toContain(k);
    expect(entries.at(-1)).toMatchObject({ kind: "control", action: "power-off" });
  });

  it("replays with identical digests at every checkpoint and byte-identical serial output", async () => {
    const r = await replayEntries(header, entries);
    expect(r.summary.end).toBe("power-off");
    expect(r.summary.digestsChecked).toBe(entries.filter((e) => e.kind === "digest").length);
    expect(r.summary.digestsChecked).toBeGreaterThan(3);
    expect(r.summary.slices).toBe(recordedEnd.slice);
    expect(r.summary.instructions).toBe(recordedEnd.icount);
    expect(r.serial).toBe(recordedSerial);
    expect(r.serial).toContain("kbd 1E");
  });

  it("reports a tampered input byte as a divergence naming the first divergent slice", async () => {
    const i = entries.findIndex((e) => e.kind === "serial" && new TextDecoder().decode(e.data).startsWith("ping"));
    const tampered = entries.map((e, j) => (j === i && e.kind === "serial" ? { ...e, data: new TextEncoder().encode("pong\r") } : e));
    const err = await replayEntries(header, tampered).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(LockstepError);
    const d = (err as LockstepError).details as { slice: number; lastVerifiedSlice: number };
    expect((err as LockstepError).code).toBe(ErrorCode.divergence);
    expect(d.slice).toBeGreaterThan(entries[i]!.slice);
    expect(d.lastVerifiedSlice).toBeGreaterThanOrEqual(entries[i]!.slice);
    expect(d.slice - entries[i]!.slice).toBeLessThanOrEqual(digestEvery);
  });

  it("reports a perturbed machine (one RAM byte flipped) at the next digest", async () => {
    const at = entries.find((e) => e.kind === "digest" && e.slice > 60)!.slice;
    const flipSlice = at - 5;
    const err = await replayEntries(header, entries, { perturb: { slice: flipSlice, ramOffset: 0x300000 } }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect((err as LockstepError).code).toBe(ErrorCode.divergence);
    expect((err as LockstepError).message).toMatch(new RegExp(`diverged at slice ${at}: the state digest`));
  });
});
