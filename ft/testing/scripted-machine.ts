/**
 * ScriptedMachine: a fake guest for simulations, deterministic like the real one. Its state is a hash
 * chain over the slices it ran and the inputs it received; every slice advances the instruction count
 * by a state-dependent amount, and every few slices it prints a line with a counter, so a diverged
 * backup shows in both its digest and its output. Inputs it received are recorded to check that
 * each console input is applied exactly once.
 */
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";

export class ScriptedMachine {
  slice = 0;
  icount = 0;
  private hash = 0x811c9dc5;
  private counter = 0;
  readonly appliedInputs: Array<{ client: string; seq: number }> = [];

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
    }
  }

  runSlice(): Uint8Array | null {
    this.slice++;
    this.mix(this.slice);
    this.icount += 1000 + (this.hash % 97);
    if (this.hash % 3 === 0) {
      this.counter++;
      return new TextEncoder().encode(`${this.counter}\n`);
    }
    return null;
  }

  /** The whole machine as bytes (the simulation's checkpoint). */
  save(): Uint8Array {
    return new TextEncoder().encode(JSON.stringify({ slice: this.slice, icount: this.icount, hash: this.hash, counter: this.counter, appliedInputs: this.appliedInputs }));
  }

  static restore(bytes: Uint8Array): ScriptedMachine {
    const s = JSON.parse(new TextDecoder().decode(bytes)) as { slice: number; icount: number; hash: number; counter: number; appliedInputs: Array<{ client: string; seq: number }> };
    const m = new ScriptedMachine();
    m.slice = s.slice;
    m.icount = s.icount;
    m.hash = s.hash;
    m.counter = s.counter;
    m.appliedInputs.push(...s.appliedInputs);
    return m;
  }

  digest(): string {
    return this.hash.toString(16).padStart(8, "0") + this.icount.toString(16).padStart(8, "0");
  }
}
