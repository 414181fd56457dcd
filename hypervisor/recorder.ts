/**
 * Recorder: the primary's side of deterministic execution. It owns the decisions a live run must
 * take from the outside world — when input enters, how guest time follows wall time — and turns
 * each into a log entry applied at a slice boundary, so that a replayer fed the same entries makes
 * the same machine. It never reads a clock itself: the caller passes the wall clock's reading
 * (expressed as guest milliseconds) into `boundary()`, which makes it testable without real time.
 *
 * Pacing: while the guest halts, the caller waits until wall time reaches the next
 * virtual deadline; input arriving earlier ends the wait with a logged clock advance. While busy,
 * guest time that falls behind wall time jumps forward (logged); a persistent difference in speed
 * changes the rate (logged). Guest time never moves backwards.
 */
import type { MachineConfig } from "../emulator/machine-config.js";
import { serialChunkBytesMax } from "./event-log/serial-input.js";
import { keyboardChunkBytesMax } from "./event-log/keyboard-input.js";
import { diskDataChunkBytes } from "./event-log/disk-completion.js";
import type { LogEntry } from "./event-log/log-entry.js";
import type { SliceDriver } from "./slice-driver.js";
import { captureSession, type SessionCheckpoint } from "./checkpoint.js";

export interface RecorderOptions {
  /** Log a state digest every this many slices (0: never). */
  digestEverySlices: number;
  /** Receives every entry in order, already applied. */
  sink: (entry: LogEntry) => void;
  /** Busy guest time this far behind wall time jumps forward. */
  catchUpMs?: number;
  /** Wall time between rate evaluations while busy. */
  rateWindowMs?: number;
  /** Input bytes queued at most (backpressure: `queue*` reports false past it). */
  pendingBytesMax?: number;
  /** No checkpoint before this slice (default 0; see `checkpointSliceMinFor`). */
  checkpointSliceMin?: number;
  /** Network frames waiting for room in the NIC's receive ring at most (more are dropped, as by a NIC). */
  netPendingFramesMax?: number;
}

/** Frames that enter the NIC at one boundary at most (see netDeliverableAfter). */
export const netBatchFramesMax = 8;

export type BoundaryDecision =
  /** Run the next slice now. */
  | { action: "run" }
  /** The guest is idle: wait this long (wall ms) or until input arrives, then call again. */
  | { action: "wait"; waitMs: number };

type PendingInput =
  | { kind: "serial" | "keys"; data: Uint8Array; source?: { client: string; seq: number } }
  | { kind: "disk-read"; id: number; at: number; data: Uint8Array }
  | { kind: "disk-write"; id: number };

/**
 * No checkpoint of a machine that boots through the BIOS before this slice: a linux machine restored
 * from a checkpoint taken in the first ~20 slices of its boot (measured: at slices 5 and 20)
 * diverges from the original within a few slices, from 23 on it does not; some state of that early
 * boot is in neither v86's save_state nor wasm memory. A backup that asks to join then gets a
 * checkpoint a little later instead. (The multiboot test kernel has no BIOS phase.)
 */
export const checkpointSliceMin = 100;

export function checkpointSliceMinFor(config: Pick<MachineConfig, "kind">): number {
  return config.kind !== "multiboot" ? checkpointSliceMin : 0; // every kind but multiboot boots through SeaBIOS
}

export class Recorder {
  private pending: PendingInput[] = [];
  private pendingBytes = 0;
  private readonly catchUpMs: number;
  private readonly rateWindowMs: number;
  private readonly pendingBytesMax: number;
  private window: { wallGuestMs: number; icount: number } | undefined;
  private lastDigestSlice = 0;
  private poweredOff = false;
  /** Frames from the host link not yet delivered: they enter when the NIC's receive ring has room. */
  private netPending: Uint8Array[] = [];
  /** Frames dropped because too many were waiting (the guest did not take them fast enough). */
  netDropped = 0;

  constructor(
    readonly driver: SliceDriver,
    private readonly options: RecorderOptions,
  ) {
    this.catchUpMs = options.catchUpMs ?? 20;
    this.rateWindowMs = options.rateWindowMs ?? 250;
    this.pendingBytesMax = options.pendingBytesMax ?? 1 << 20;
  }

  /**
   * Queues console bytes for the next boundary. False when the queue is full (nothing queued).
   * `source` names the console client and input sequence number (at most one chunk of bytes).
   */
  queueSerial(data: Uint8Array, source?: { client: string; seq: number }): boolean {
    return this.queue("serial", data, serialChunkBytesMax, source);
  }

  /** Queues PS/2 scancodes for the next boundary. False when the queue is full. `source`: as queueSerial. */
  queueKeys(data: Uint8Array, source?: { client: string; seq: number }): boolean {
    return this.queue("keys", data, keyboardChunkBytesMax, source);
  }

  /**
   * A disk read finished (its data in the bounce buffer `data`): logged and delivered at the next
   * boundary, in parts of at most `diskDataChunkBytes`. Never refused: the guest waits for it.
   * A read the guest already got a part of (the old primary logged it, then died before the rest;
   * this machine took over and issued the read again) is supplied from where that part ended.
   */
  queueDiskRead(id: number, data: Uint8Array): void {
    const from = this.driver.machine.disk?.readFilled(id) ?? 0;
    for (let at = from; at < data.length; at += diskDataChunkBytes) {
      this.pending.push({ kind: "disk-read", id, at, data: data.subarray(at, at + diskDataChunkBytes) });
    }
  }

  /**
   * An Ethernet frame for the guest: logged and delivered at the first boundary where the NIC's
   * receive ring has room for it, in arrival order. False (dropped, counted) when too many frames
   * wait already, or after power-off: a NIC whose ring is full drops what arrives, and so does this.
   */
  queueNet(frame: Uint8Array): boolean {
    if (this.poweredOff || this.netPending.length >= (this.options.netPendingFramesMax ?? 256)) {
      this.netDropped++;
      return false;
    }
    this.netPending.push(frame);
    return true;
  }

  /** Whether the oldest waiting frame could be delivered now. */
  private get netDeliverable(): boolean {
    return this.netDeliverableAfter(0);
  }

  /**
   * Whether the oldest waiting frame may enter now, `delivered` frames having entered at this
   * boundary already. Frames enter in batches of at most `netBatchFramesMax`, and a batch only
   * once the guest has read the last one (the ring is empty): Linux's 8390 driver takes at most 9
   * frames per interrupt and the ne2k raises no new one for frames already in its ring, so the rest
   * of a larger batch would wait for the next frame to arrive.
   */
  private netDeliverableAfter(delivered: number): boolean {
    const f = this.netPending[0];
    const m = this.driver.machine;
    return f !== undefined && delivered < netBatchFramesMax && (delivered > 0 || m.netRingEmpty()) && m.netRoom(f.length);
  }

  /** A disk write is on the disk: logged and delivered at the next boundary. */
  queueDiskWrite(id: number): void {
    this.pending.push({ kind: "disk-write", id });
  }

  /** Input waits that the guest can take at the next boundary (frames only while the NIC has room). */
  get hasPendingInput(): boolean {
    return this.pending.length > 0 || this.netDeliverable;
  }

  /** Input from a console client (`source`) is one entry, never split: refused if longer than a chunk. */
  private queue(kind: "serial" | "keys", data: Uint8Array, chunkMax: number, source?: { client: string; seq: number }): boolean {
    if (this.poweredOff) return false;
    if (source) {
      if (data.length === 0 || data.length > chunkMax || this.pendingBytes + data.length > this.pendingBytesMax) return false;
      this.pending.push({ kind, data: data.slice(), source });
      this.pendingBytes += data.length;
      return true;
    }
    if (data.length === 0) return true;
    if (this.pendingBytes + data.length > this.pendingBytesMax) return false;
    for (let i = 0; i < data.length; i += chunkMax) {
      this.pending.push({ kind, data: data.slice(i, i + chunkMax) });
    }
    this.pendingBytes += data.length;
    return true;
  }

  private emit(entry: LogEntry): void {
    this.driver.apply(entry);
    this.options.sink(entry);
  }

  /**
   * Decides what happens at the current boundary. `wallGuestMs` is where guest time would be if it
   * followed the wall clock exactly; `undefined` for an unpaced run (as fast as possible, idle time
   * skipped: used by tests and benchmarks).
   */
  boundary(wallGuestMs: number | undefined): BoundaryDecision {
    const d = this.driver;
    const at = { slice: d.slice, icount: d.icount };
    const guestMs = d.clock.peekMs();
    if (wallGuestMs !== undefined) {
      if (d.halted) {
        const deadline = guestMs + d.idleAdvanceMs();
        if (this.hasPendingInput) {
          // Input ends the idle wait early: advance to now (bounded by the deadline) explicitly.
          const advanceMs = Math.min(Math.max(wallGuestMs - guestMs, 0), deadline - guestMs);
          this.emit({ kind: "clock", ...at, advanceMs });
        } else if (wallGuestMs < deadline) {
          return { action: "wait", waitMs: deadline - wallGuestMs };
        }
        this.window = undefined;
      } else {
        const behindMs = wallGuestMs - guestMs;
        if (behindMs > this.catchUpMs) this.emit({ kind: "clock", ...at, advanceMs: behindMs });
        this.evaluateRate(wallGuestMs, at);
      }
    }
    for (const p of this.pending) {
      switch (p.kind) {
        case "serial":
        case "keys":
          this.emit({ kind: p.kind, ...at, data: p.data, ...(p.source ? { source: p.source } : {}) });
          break;
        case "disk-read":
          this.emit({ kind: "disk-read", ...at, id: p.id, at: p.at, data: p.data });
          break;
        case "disk-write":
          this.emit({ kind: "disk-write", ...at, id: p.id });
          break;
      }
    }
    this.pending = [];
    this.pendingBytes = 0;
    for (let n = 0; this.netDeliverableAfter(n); n++) this.emit({ kind: "net", ...at, data: this.netPending.shift()! });
    const every = this.options.digestEverySlices;
    if (every > 0 && d.slice - this.lastDigestSlice >= every) {
      this.lastDigestSlice = d.slice;
      this.emit({ kind: "digest", ...at, digest: d.machine.digest() });
    }
    return { action: "run" };
  }

  /**
   * Busy for a whole window: set the rate to the speed the emulator actually reached, slowed further
   * while guest time is ahead of wall time so that the lead closes within about one window (a lead
   * cannot be removed by a jump: guest time never goes backwards).
   */
  private evaluateRate(wallGuestMs: number, at: { slice: number; icount: number }): void {
    const w = this.window;
    if (!w) {
      this.window = { wallGuestMs, icount: at.icount };
      return;
    }
    const elapsedMs = wallGuestMs - w.wallGuestMs;
    if (elapsedMs < this.rateWindowMs) return;
    const instructions = at.icount - w.icount;
    this.window = { wallGuestMs, icount: at.icount };
    if (instructions <= 0) return;
    const measured = elapsedMs / instructions;
    const aheadMs = this.driver.clock.peekMs() - wallGuestMs;
    const target = aheadMs > this.catchUpMs ? measured * Math.max(0.25, 1 - aheadMs / this.rateWindowMs) : measured;
    const current = this.driver.clock.msPerInstruction;
    const ratio = target / current;
    // Only follow a lasting change of more than 10%; small jitter is absorbed by idle waits and
    // forward jumps. Bounded to 4x per window so one stalled window cannot wreck the rate.
    if (ratio > 1.1 || ratio < 0.9) {
      const next = current * Math.min(4, Math.max(0.25, ratio));
      this.emit({ kind: "clock", ...at, msPerInstruction: next });
    }
  }

  /**
   * Logs a checkpoint at the current boundary (which clears the JIT cache here and on every machine
   * that follows the log) and captures the session. Undefined while a disk request is in flight, or
   * before `options.checkpointSliceMin`: try again at a later boundary.
   */
  checkpoint(): SessionCheckpoint | undefined {
    const d = this.driver;
    if (this.poweredOff || d.slice < (this.options.checkpointSliceMin ?? 0) || (d.machine.disk?.inFlight ?? 0) > 0) return undefined;
    this.emit({ kind: "control", slice: d.slice, icount: d.icount, action: "checkpoint" });
    return captureSession(d);
  }

  /** Logs the end of the recording at the current boundary. */
  powerOff(): void {
    if (this.poweredOff) return;
    this.poweredOff = true;
    const d = this.driver;
    this.emit({ kind: "digest", slice: d.slice, icount: d.icount, digest: d.machine.digest() });
    this.emit({ kind: "control", slice: d.slice, icount: d.icount, action: "power-off" });
  }

  /** A progress marker for the current boundary (the log is complete through it). */
  progress(): void {
    if (this.poweredOff) return; // power-off is the last entry of a log
    this.options.sink({ kind: "progress", slice: this.driver.slice, icount: this.driver.icount });
  }
}
