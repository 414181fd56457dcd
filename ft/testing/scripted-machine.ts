/**
 * ScriptedMachine: a fake guest for simulations, deterministic like the real one. Its state is a hash
 * chain over the slices it ran, the inputs it received and its disk completions; every slice advances
 * the instruction count by a state-dependent amount, and every few slices it prints a line with a
 * counter, so a diverged backup shows in both its digest and its output. Inputs it received are
 * recorded to check that each console input is applied exactly once. With `diskEvery` > 0 it also
 * drives a small disk (ScriptedGuestDisk): about one slice in `diskEvery` issues a read or a write,
 * chosen by its state, so every machine fed the same log issues the same requests.
 */
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { ScriptedGuestDisk, type GuestDiskState } from "./scripted-guest-disk.js";

export interface ScriptedMachineOptions {
  /** About one slice in this many issues a disk request (0: no disk). */
  diskEvery: number;
  /** Sectors of the disk. */
  diskSectors: number;
  /** Disk requests in flight at most. */
  diskInFlightMax: number;
}

const noDisk: ScriptedMachineOptions = { diskEvery: 0, diskSectors: 8, diskInFlightMax: 4 };

export class ScriptedMachine {
  slice = 0;
  icount = 0;
  private hash = 0x811c9dc5;
  private counter = 0;
  readonly appliedInputs: Array<{ client: string; seq: number }> = [];
  readonly disk: ScriptedGuestDisk;

  constructor(readonly options: ScriptedMachineOptions = noDisk) {
    this.disk = new ScriptedGuestDisk(options.diskSectors, options.diskInFlightMax, (id, data) => {
      this.mix(id);
      if (data) for (let i = 0; i < data.length; i += 64) this.mix(data[i]!);
    });
  }

  private mix(x: number): void {
    this.hash = Math.imul(this.hash ^ x, 0x01000193) >>> 0;
  }

  apply(entry: LogEntry): void {
    if (entry.icount !== this.icount || entry.slice !== this.slice) {
      throw new Error(`entry for slice ${entry.slice}/${entry.icount} applied at ${this.slice}/${this.icount}`);
    }
    if (entry.kind === "serial") {
      for (const b of entry.data) this.mix(b);
      if (entry.source) this.appliedInputs.push(entry.source);
      this.counter += 1000;
    } else if (entry.kind === "disk-read") {
      this.disk.disk.supplyRead(entry.id, entry.at, entry.data);
    } else if (entry.kind === "disk-write") {
      this.disk.disk.completeWrite(entry.id);
    }
  }

  runSlice(): Uint8Array | null {
    this.slice++;
    this.mix(this.slice);
    this.icount += 1000 + (this.hash % 97);
    const every = this.options.diskEvery;
    if (every > 0 && (this.hash >>> 7) % every === 0) this.disk.maybeIssue(this.hash >>> 10);
    if (this.hash % 3 === 0) {
      this.counter++;
      return new TextEncoder().encode(`${this.counter}\n`);
    }
    return null;
  }

  /** The whole machine as bytes (the simulation's checkpoint; no disk request may be in flight). */
  save(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ slice: this.slice, icount: this.icount, hash: this.hash, counter: this.counter, appliedInputs: this.appliedInputs, options: this.options, disk: this.disk.save() }));
  }

  static restore(bytes: Uint8Array): ScriptedMachine {
    const s = JSON.parse(new TextDecoder().decode(bytes)) as { slice: number; icount: number; hash: number; counter: number; appliedInputs: Array<{ client: string; seq: number }>; options: ScriptedMachineOptions; disk: GuestDiskState };
    const m = new ScriptedMachine(s.options);
    m.slice = s.slice;
    m.icount = s.icount;
    m.hash = s.hash;
    m.counter = s.counter;
    m.appliedInputs.push(...s.appliedInputs);
    m.disk.restore(s.disk);
    return m;
  }

  digest(): string {
    return this.hash.toString(16).padStart(8, "0") + this.icount.toString(16).padStart(8, "0");
  }
}
