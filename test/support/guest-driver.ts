/**
 * A test driver for a guest: runs slices unpaced (idle time skipped) through a Recorder, types on
 * the serial console and waits for output by marker, with a slice budget so a stuck guest fails
 * the test instead of hanging it.
 */
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { loadMachine, type LoadedMachine } from "../../emulator/machine-config.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { defaultClockParams, MachineSession } from "../../hypervisor/machine-session.js";
import { checkpointSliceMinFor, Recorder } from "../../hypervisor/recorder.js";
import { MemoryDiskPort } from "../../hypervisor/disk/disk-port.js";

export interface GuestDriverOptions {
  image: string;
  disk?: Uint8Array | "fresh" | "none";
  epochMs?: number;
  seed?: number;
  digestEverySlices?: number;
  onEntry?: (entry: LogEntry) => void;
  jit?: boolean;
  /** Keep a time tape recorder on the machine (`session.tape`). */
  tape?: boolean;
}

export class GuestDriver {
  output = "";
  private readonly decoder = new TextDecoder();

  private constructor(
    readonly loaded: LoadedMachine,
    readonly session: MachineSession,
    readonly recorder: Recorder,
    readonly disk: Uint8Array | undefined,
    private readonly diskPort: MemoryDiskPort | undefined,
  ) {}

  static async boot(options: GuestDriverOptions): Promise<GuestDriver> {
    const loaded = loadMachine(options.image);
    const disk =
      options.disk instanceof Uint8Array
        ? options.disk
        : options.disk === "none" || !loaded.config.disk
          ? undefined
          : makeBlankDisk(loaded.config.disk);
    const session = await MachineSession.open({
      loaded,
      ...(disk ? { diskBytes: disk.byteLength } : {}),
      ...(options.jit !== undefined ? { jit: options.jit } : {}),
      ...(options.tape ? { tape: true } : {}),
      clock: defaultClockParams(options.epochMs ?? Date.UTC(2026, 0, 1), options.seed ?? 0),
    });
    const recorder = new Recorder(session.driver, {
      digestEverySlices: options.digestEverySlices ?? 0,
      sink: options.onEntry ?? (() => {}),
      checkpointSliceMin: checkpointSliceMinFor(loaded.config),
    });
    return new GuestDriver(loaded, session, recorder, disk, disk ? new MemoryDiskPort(disk, recorder) : undefined);
  }

  /** Runs slices until the output (since `from`) matches, or fails after `slicesMax` slices. */
  runUntil(pattern: RegExp | string, slicesMax = 200_000, from = 0): RegExpMatchArray {
    for (let i = 0; i < slicesMax; i++) {
      const tail = this.output.slice(from);
      const m = typeof pattern === "string" ? (tail.includes(pattern) ? ([pattern] as RegExpMatchArray) : null) : tail.match(pattern);
      if (m) return m;
      this.step();
    }
    throw new Error(`guest output did not match ${String(pattern)} within ${slicesMax} slices; output tail:\n${this.output.slice(-600)}`);
  }

  step(): void {
    this.recorder.boundary(undefined);
    const r = this.session.driver.runSlice();
    if (r.diskRequests.length > 0) this.diskPort!.submit(r.diskRequests);
    if (r.serial) this.output += this.decoder.decode(r.serial);
  }

  runSlices(n: number): void {
    for (let i = 0; i < n; i++) this.step();
  }

  /** Types a line and returns the output it produced up to `until` (default: the next prompt). */
  type(text: string): void {
    this.recorder.queueSerial(new TextEncoder().encode(text));
  }

  /** Runs a command and returns the output between its echo and the end marker. */
  command(cmd: string, until: RegExp | string, slicesMax?: number): string {
    const from = this.output.length;
    this.type(cmd + "\r");
    const m = this.runUntil(until, slicesMax, from);
    const end = this.output.indexOf(m[0], from) + m[0].length;
    return this.output.slice(from, end);
  }

  keys(scancodes: number[]): void {
    this.recorder.queueKeys(Uint8Array.from(scancodes));
  }

  close(): void {
    this.session.close();
  }
}
