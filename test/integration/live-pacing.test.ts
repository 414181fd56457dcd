// Live, guest time follows wall time: `sleep 5` in the linux guest takes 5 s of host time and the
// guest's clock reads the host's. Offline, the same idle time replays at no cost.
import { describe, expect, it } from "vitest";
import { loadMachine } from "../../emulator/machine-config.js";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { until } from "../../ft/runtime/until.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";
import { headerFor, replayEntries } from "../support/record-replay.js";

/**
 * A live (paced) guest on a machine thread, as `lockstep record` runs it, with helpers to type and
 * to wait for output, timestamped on arrival.
 */
async function liveGuest(image: string, epochMs: number, seed = 1, followHostCalendar = false) {
  const disk = makeBlankDisk(loadMachine(image).config.disk!);
  const entries: LogEntry[] = [];
  let output = "";
  const arrivals: Array<{ at: number; text: string }> = [];
  const decoder = new TextDecoder();
  const machine = await RecordingMachine.start({
    image,
    clock: defaultClockParams(epochMs, seed),
    ...(followHostCalendar ? { wallEpochMs: epochMs } : {}),
    paced: true,
    digestEverySlices: 200,
    disk,
    onEntries: (e) => entries.push(...e),
    onOutput: (data) => {
      output += decoder.decode(data);
      arrivals.push({ at: performance.now(), text: output });
    },
  });
  const waitFor = async (re: RegExp, from: number, timeoutMs: number) => {
    await until(() => re.test(output.slice(from)), timeoutMs, () => `${re}: ${output.slice(-300)}`, 5);
    return output.slice(from).match(re)!; // the first match after `from`, the one `until` saw
  };
  /** Host time at which the output first contained `text` (after `from`). */
  const arrivalOf = (text: string, from: number) => arrivals.find((a) => a.text.indexOf(text, from) >= 0)!.at;
  const type = (s: string) => machine.type(new TextEncoder().encode(s));
  return { machine, entries, waitFor, arrivalOf, type, output: () => output };
}

describe("live pacing", () => {
  it("sleep 5 in the linux guest takes 5 s of host time, and the guest's date is the host's", async () => {
    const g = await liveGuest("linux", Date.now(), 1, true);
    await g.waitFor(/lockstep:\/root# /, 0, 90_000);
    const from = g.output().length;
    g.type("echo T0''-mark; sleep 5; echo T1''-mark\r");
    await g.waitFor(/T1-mark\r\n/, from, 30_000);
    const elapsedMs = g.arrivalOf("T1-mark", from) - g.arrivalOf("T0-mark", from);
    // `date +%s` truncates, so wait in the guest for its clock's second to tick over: the host time
    // at which that edge is printed is compared with the second the guest reached.
    const from2 = g.output().length;
    g.type('t=$(date +%s); while [ "$(date +%s)" = "$t" ]; do :; done; echo EDGE$((t+1))-at\r');
    const m = await g.waitFor(/EDGE(\d+)-at\r\n/, from2, 30_000);
    const edgeHostMs = Date.now() - (performance.now() - g.arrivalOf(`EDGE${m[1]}-at`, from2));
    await g.machine.stop();
    expect(elapsedMs).toBeGreaterThan(4700);
    expect(elapsedMs).toBeLessThan(5300);
    expect(Math.abs(edgeHostMs / 1000 - Number(m[1]))).toBeLessThan(1);
  });

  it("replays a mostly idle recording far faster than it was recorded", async () => {
    const clock = defaultClockParams(Date.UTC(2026, 0, 1), 5);
    const g = await liveGuest("tiny", clock.epochMs, clock.seed);
    await g.waitFor(/tiny> /, 0, 10_000);
    const started = performance.now();
    g.type("sleep 12c\r"); // 300 ticks: 3 s
    await g.waitFor(/slept ticks/, 0, 10_000);
    await g.machine.stop();
    const recordMs = performance.now() - started;
    const header = headerFor("tiny", clock, 200);
    const t0 = performance.now();
    const r = await replayEntries(header, g.entries);
    const replayMs = performance.now() - t0;
    expect(r.summary.end).toBe("power-off");
    expect(recordMs).toBeGreaterThan(2900);
    expect(replayMs * 5).toBeLessThan(recordMs);
  });
});
