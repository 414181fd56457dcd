/**
 * RecordingMachine: a machine recording alone on its own thread, its disk image in this thread's
 * memory — what `lockstep run` and `lockstep record` run (and the tests and benchmarks that record
 * the way they do). The machine thread runs slices back to back and logs every input; this side
 * serves the guest's disk requests from the image, hands on the entries, output and checkpoints, and
 * types input. `stop()` logs power-off at the next boundary and resolves once every entry is here.
 */
import type { LoadOptions } from "../../emulator/machine-config.js";
import type { TextScreen } from "../../emulator/text-screen.js";
import type { GraphicsScreen } from "../../emulator/vga-graphics.js";
import type { SessionCheckpoint } from "../checkpoint.js";
import { MemoryDiskPort } from "../disk/disk-port.js";
import type { LogEntry } from "../event-log/log-entry.js";
import type { ClockParams } from "../virtual-clock.js";
import { MachineThread } from "./machine-thread.js";
import type { NetSlice } from "./machine-protocol.js";

export interface RecordingMachineOptions {
  /** A bundled machine name or a config path, and its load options. */
  image: string;
  load?: LoadOptions;
  clock: ClockParams;
  /** Unix ms of guest time 0: guest time then follows the host calendar from power-on. */
  wallEpochMs?: number;
  /** Follow wall time (live) or run flat out, idle time skipped. */
  paced: boolean;
  digestEverySlices: number;
  jit?: boolean;
  /** The guest's hard disk: its writes land in this array. */
  disk?: Uint8Array;
  /** A progress entry at least this often (host ms) while the guest runs (a log file's cadence). */
  progressEveryMs?: number;
  /** Entries as recorded, in log order. */
  onEntries?: (entries: LogEntry[]) => void;
  /** Serial output of slice `slice`. */
  onOutput?: (data: Uint8Array, slice: number) => void;
  /** Ethernet frames the guest sent in a slice. */
  onNet?: (n: NetSlice) => void;
  /** A checkpoint taken at `requestCheckpoint()`'s boundary (its control entry came before it). */
  onCheckpoint?: (c: SessionCheckpoint) => void;
}

export class RecordingMachine {
  private failure: Error | undefined;
  private stopping = false;

  private constructor(
    private readonly thread: MachineThread,
    private readonly disk: { port?: MemoryDiskPort },
  ) {}

  static async start(o: RecordingMachineOptions): Promise<RecordingMachine> {
    const disk: { port?: MemoryDiskPort } = {};
    let self: RecordingMachine | undefined;
    const thread = await MachineThread.start(
      {
        role: "primary",
        image: o.image,
        load: o.load ?? {},
        ...(o.disk ? { diskBytes: o.disk.byteLength } : {}),
        clock: o.clock,
        ...(o.wallEpochMs !== undefined ? { wallEpochMs: o.wallEpochMs } : {}),
        digestEverySlices: o.digestEverySlices,
        paced: o.paced,
        ...(o.jit !== undefined ? { jit: o.jit } : {}),
        ...(o.progressEveryMs !== undefined ? { progressEveryMs: o.progressEveryMs } : {}),
      },
      {
        batch: (b) => {
          if (b.entries.length > 0) o.onEntries?.(b.entries);
          for (const out of b.output) o.onOutput?.(out.data, out.slice);
          for (const d of b.disk) disk.port?.submit(d.requests);
          for (const n of b.net) o.onNet?.(n);
        },
        checkpoint: (c) => o.onCheckpoint?.(c),
        failed: (reason, error) => {
          if (self) self.failure = error ?? new Error(reason);
        },
      },
    );
    self = new RecordingMachine(thread, disk);
    thread.setGate(true); // alone: nothing to wait for
    if (o.disk) disk.port = new MemoryDiskPort(o.disk, { queueDiskRead: (id, data) => thread.diskRead(id, data), queueDiskWrite: (id) => thread.diskWrite(id) });
    return self;
  }

  /** Console bytes for the guest's serial port at the next boundary. */
  type(data: Uint8Array): void {
    this.thread.input(data);
  }

  /** Ethernet frames for the guest's NIC (logged when its receive ring has room). */
  net(frames: Uint8Array[]): void {
    this.thread.net(frames);
  }

  /** PS/2 scancodes at the next boundary. */
  keys(data: Uint8Array): void {
    this.thread.keys(data);
  }

  /** The guest's screen in a VBE graphics mode at the next boundary (null: not in one). */
  graphics(): Promise<GraphicsScreen | null | undefined> {
    return this.thread.graphics();
  }

  /** The guest's VGA text screen at the next boundary (a view: it changes nothing). */
  screen(): Promise<TextScreen | undefined> {
    return this.thread.screen();
  }

  /** A checkpoint at the next boundary without disk I/O in flight (see `onCheckpoint`). */
  requestCheckpoint(): void {
    this.thread.requestCheckpoint();
  }

  get slice(): number {
    return this.thread.slice;
  }

  get icount(): number {
    return this.thread.icount;
  }

  get guestMs(): number {
    return this.thread.counters.guestMs;
  }

  /** Resolves when the machine stops: after `stop()`, or by itself (then with its error). */
  async ended(): Promise<void> {
    await this.thread.ended;
    if (this.failure) throw this.failure;
  }

  /** Logs power-off at the next boundary; resolves once every entry and output was handed on. */
  async stop(): Promise<void> {
    if (!this.stopping) {
      this.stopping = true;
      await this.thread.stop(30_000);
    }
    if (this.failure) throw this.failure;
  }
}

