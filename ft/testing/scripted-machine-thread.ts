/**
 * ScriptedMachineThread: the simulation's stand-in for a MachineThread. It takes the same requests
 * (inputs, log entries, checkpoints, go-live, the gate and progress flags) and reports the same
 * events (batches, executed, checkpoint taken, took over) to a NodeCore, synchronously, one `step`
 * at a time, with a ScriptedMachine as the guest. Like the real one, a primary logs a progress entry
 * after every slice while a backup follows, and a backup executes only through the last progress
 * entry it received. Like the Recorder, a primary logs console input and disk completions (which the
 * simulated disk hands it, as a DiskScheduler does) at the next boundary, in the order they arrived;
 * it reports the disk requests each slice issued, takes a checkpoint only with no disk request in
 * flight, and a machine that takes over reports the requests the log completed none of.
 */
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { MachineBatch } from "../../hypervisor/machine-thread/machine-protocol.js";
import { ScriptedMachine } from "./scripted-machine.js";

export interface ScriptedEvents {
  batch(b: MachineBatch): void;
  executed(slice: number): void;
  checkpoint(bytes: Uint8Array): void;
  /** `pending`: disk requests issued and not completed (the new primary issues them again). */
  tookOver(slice: number, pending: DiskRequest[]): void;
  failed(reason: string): void;
  /** After every slice (before the entries of the boundary it ends at are applied). */
  afterSlice?(slice: number, digest: string): void;
}

export class ScriptedMachineThread {
  gate = false;
  progress = false;
  /** Console input and disk completions for the next boundary, in arrival order. */
  private pending: Array<{ kind: "serial"; data: Uint8Array; source: { client: string; seq: number } } | { kind: "disk-read"; id: number; data: Uint8Array } | { kind: "disk-write"; id: number }> = [];
  private queue: LogEntry[] = [];
  private next = 0;
  private complete: number;
  private checkpointWanted = false;
  private goLive = false;
  private stopped = false;

  constructor(
    readonly machine: ScriptedMachine,
    public role: "primary" | "backup",
    private readonly events: ScriptedEvents,
  ) {
    this.complete = machine.slice;
  }

  static fromCheckpoint(bytes: Uint8Array, events: ScriptedEvents): ScriptedMachineThread {
    return new ScriptedMachineThread(ScriptedMachine.restore(bytes), "backup", events);
  }

  get slice(): number {
    return this.machine.slice;
  }

  input(data: Uint8Array, source: { client: string; seq: number }): void {
    this.pending.push({ kind: "serial", data, source });
  }

  /** A disk read finished (primary): logged and delivered at the next boundary. */
  diskRead(id: number, data: Uint8Array): void {
    this.pending.push({ kind: "disk-read", id, data });
  }

  /** A disk write is on the disk (primary): logged and delivered at the next boundary. */
  diskWrite(id: number): void {
    this.pending.push({ kind: "disk-write", id });
  }

  entries(entries: LogEntry[]): void {
    for (const e of entries) {
      this.queue.push(e);
      if (e.kind === "progress" && e.slice > this.complete) this.complete = e.slice;
    }
  }

  requestCheckpoint(): void {
    this.checkpointWanted = true;
  }

  requestGoLive(): void {
    this.goLive = true;
  }

  /** One turn of the machine thread: up to `slicesMax` slices. */
  step(nowMs: number, slicesMax: number): void {
    if (this.stopped) return;
    try {
      if (this.role === "primary") this.record(nowMs, slicesMax);
      else this.follow(nowMs, slicesMax);
    } catch (e) {
      this.stopped = true;
      this.events.failed((e as Error).message);
    }
  }

  private record(nowMs: number, slicesMax: number): void {
    const m = this.machine;
    const batch: MachineBatch = { type: "batch", entries: [], output: [], disk: [], net: [], slice: m.slice, atWallMs: nowMs };
    const emit = (e: LogEntry) => {
      if (e.kind !== "progress") m.apply(e);
      batch.entries.push(e);
    };
    // like the Recorder: a checkpoint waits for a boundary with no disk request in flight
    if (this.checkpointWanted && m.disk.inFlight === 0) {
      this.checkpointWanted = false;
      emit({ kind: "control", slice: m.slice, icount: m.icount, action: "checkpoint" });
      this.events.batch(batch);
      this.events.checkpoint(m.save());
      return this.record(nowMs, slicesMax);
    }
    for (let n = 0; n < slicesMax && this.gate; n++) {
      const at = { slice: m.slice, icount: m.icount };
      for (const p of this.pending) {
        if (p.kind === "serial") emit({ kind: "serial", ...at, data: p.data, source: p.source });
        else if (p.kind === "disk-read") emit({ kind: "disk-read", ...at, id: p.id, at: 0, data: p.data });
        else emit({ kind: "disk-write", ...at, id: p.id });
      }
      this.pending = [];
      const out = m.runSlice();
      this.events.afterSlice?.(m.slice, m.digest());
      if (out) batch.output.push({ slice: m.slice, data: out });
      const requests = m.disk.disk.takeIssued();
      if (requests.length > 0) batch.disk.push({ slice: m.slice, requests });
      if (this.progress) emit({ kind: "progress", slice: m.slice, icount: m.icount });
    }
    batch.slice = m.slice;
    if (batch.entries.length > 0 || batch.output.length > 0 || batch.disk.length > 0) this.events.batch(batch);
  }

  private follow(nowMs: number, slicesMax: number): void {
    const m = this.machine;
    const batch: MachineBatch = { type: "batch", entries: [], output: [], disk: [], net: [], slice: m.slice, atWallMs: nowMs };
    const applyDue = (limit: number) => {
      while (this.next < this.queue.length && this.queue[this.next]!.slice === m.slice && m.slice <= limit) {
        const e = this.queue[this.next++]!;
        if (e.icount !== m.icount) throw new Error(`diverged: entry icount ${e.icount}, machine ${m.icount} at slice ${m.slice}`);
        if (e.kind !== "progress" && e.kind !== "control") m.apply(e);
      }
    };
    const limit = this.goLive ? (this.queue.at(-1)?.slice ?? m.slice) : this.complete;
    const max = this.goLive ? Number.MAX_SAFE_INTEGER : slicesMax;
    for (let n = 0; n < max; n++) {
      applyDue(limit);
      if (m.slice >= limit) break;
      const out = m.runSlice();
      this.events.afterSlice?.(m.slice, m.digest());
      if (out) batch.output.push({ slice: m.slice, data: out });
      m.disk.disk.takeIssued(); // a following machine's requests are completed by the log
    }
    // taking over, the entries at the last boundary are applied too (a following machine applies
    // them only before the next slice, so its state after a slice compares with the primary's)
    if (this.goLive) applyDue(limit);
    batch.slice = m.slice;
    if (batch.output.length > 0) this.events.batch(batch);
    if (this.goLive) {
      this.goLive = false;
      this.role = "primary";
      this.gate = false;
      this.events.tookOver(m.slice, m.disk.pending());
      return;
    }
    if (m.slice >= this.complete) this.events.executed(m.slice);
  }
}
