// The tiny guest recorded live (paced to wall time, serial and keyboard input arriving while it
// idles) replays bit-identically; a tampered log or a perturbed machine is a divergence that names
// its slice.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { MemoryDiskPort } from "../../hypervisor/disk/disk-port.js";
import { LiveLoop } from "../../hypervisor/live-loop.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { MachineSession } from "../../hypervisor/machine-session.js";
import { Recorder } from "../../hypervisor/recorder.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { headerFor, readRecording, replayEntries, writeRecording } from "../support/record-replay.js";

const digestEvery = 25;
let header: LogHeader;
let entries: LogEntry[];
let recordedSerial = "";
let session: MachineSession;

async function recordTinyLive(): Promise<void> {
  header = headerFor("tiny", { epochMs: Date.UTC(2026, 10, 22, 8, 0, 0), msPerInstruction: 1e-5, seed: 42 }, digestEvery);
  const loaded = loadMachine("tiny");
  const disk = makeBlankDisk(loaded.config.disk!);
  session = await MachineSession.open({ loaded, diskBytes: disk.byteLength, clock: header.clock });
  const recorded: LogEntry[] = [];
  const recorder = new Recorder(session.driver, { digestEverySlices: digestEvery, sink: (e) => recorded.push(e) });
  const decoder = new TextDecoder();
  const loop = new LiveLoop(recorder, {
    paced: true,
    disk: new MemoryDiskPort(disk, recorder),
    onSlice: (r) => {
      if (r.serial) recordedSerial += decoder.decode(r.serial);
    },
  });
  const running = loop.run();
  const waitFor = async (text: string, from: number) => {
    for (let i = 0; i < 500 && recordedSerial.indexOf(text, from) < 0; i++) await new Promise((r) => setTimeout(r, 10));
    if (recordedSerial.indexOf(text, from) < 0) throw new Error(`tiny never printed ${text}: ${recordedSerial}`);
  };
  const say = async (cmd: string, until: string) => {
    const from = recordedSerial.length;
    recorder.queueSerial(new TextEncoder().encode(cmd + "\r"));
    loop.wake();
    await waitFor(until, from);
  };
  await waitFor("tiny> ", 0);
  await say("ping", "pong");
  recorder.queueKeys(Uint8Array.from([0x1e, 0x9e, 0x30, 0xb0]));
  loop.wake();
  await waitFor("kbd B0", 0);
  await say("sleep 14", "slept");
  await say("tsc", "delta");
  await say("pit", "pit ");
  await say("rtc", "rtc ");
  await say("write 7 5a", "wrote");
  await say("read 7", "sector");
  await say("busy 200", "busy ticks");
  await say("memsum", "memsum ");
  loop.stop();
  await running;
  // through the real file format
  entries = readRecording(writeRecording("tiny.lslog", header, recorded)).entries;
}

describe("deterministic record and replay: tiny", () => {
  beforeAll(recordTinyLive, 60_000);
  afterAll(() => session?.close());

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
    expect(r.summary.slices).toBe(session.driver.slice);
    expect(r.summary.instructions).toBe(session.driver.icount);
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
