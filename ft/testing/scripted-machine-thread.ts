/**
 * ScriptedMachineThread: the simulation's stand-in for a MachineThread. It takes the same requests
 * (inputs, log entries, checkpoints, go-live, the gate and progress flags) and reports the same
 * events (batches, executed, checkpoint taken, took over) to a NodeCore, synchronously, one `step`
 * at a time, with a ScriptedMachine as the guest. Like the real one, a primary logs a progress entry
 * after every slice while a backup follows, and a backup executes only through the last progress
 * entry it received.
 */
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { MachineBatch } from "../../hypervisor/machine-thread/machine-protocol.js";
import { ScriptedMachine } from "./scripted-machine.js";

export interface ScriptedEvents {
  batch(b: MachineBatch): void;
  executed(slice: number): void;
  checkpoint(bytes: Uint8Array): void;
  tookOver(slice: number): void;
  failed(reason: string): void;
  /** After every slice (before the entries of the boundary it ends at are applied). */
  afterSlice?(slice: number, digest: string): void;
}

export class ScriptedMachineThread {
  gate = false;
  progress = false;
  private inputs: Array<{ data: Uint8Array; source: { client: string; seq: number } }> = [];
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
    this.inputs.push({ data, source });
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
    const batch: MachineBatch = { type: "batch", entries: [], output: [], disk: [], slice: m.slice, atWallMs: nowMs };
    const emit = (e: LogEntry) => {
      if (e.kind !== "progress") m.apply(e);
      batch.entries.push(e);
    };
    if (this.checkpointWanted) {
      this.checkpointWanted = false;
      emit({ kind: "control", slice: m.slice, icount: m.icount, action: "checkpoint" });
      this.events.batch(batch);
      this.events.checkpoint(m.save());
      return this.record(nowMs, slicesMax);
    }
    for (let n = 0; n < slicesMax && this.gate; n++) {
      for (const i of this.inputs) emit({ kind: "serial", slice: m.slice, icount: m.icount, data: i.data, source: i.source });
      this.inputs = [];
      const out = m.runSlice();
      this.events.afterSlice?.(m.slice, m.digest());
      if (out) batch.output.push({ slice: m.slice, data: out });
      if (this.progress) emit({ kind: "progress", slice: m.slice, icount: m.icount });
    }
    batch.slice = m.slice;
    if (batch.entries.length > 0 || batch.output.length > 0) this.events.batch(batch);
  }

  private follow(nowMs: number, slicesMax: number): void {
    const m = this.machine;
    const batch: MachineBatch = { type: "batch", entries: [], output: [], disk: [], slice: m.slice, atWallMs: nowMs };
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
      this.events.tookOver(m.slice);
      return;
    }
    if (m.slice >= this.complete) this.events.executed(m.slice);
  }
}
