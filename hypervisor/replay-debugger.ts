/**
 * ReplayDebugger: a recording replayed under a debugger's control, forwards and backwards, one
 * instruction at a time.
 *
 * A position is (slice, instruction): the boundary after `slice` slices, plus `instruction`
 * instructions of the slice that follows it. The replaying machine runs whole slices only (that is
 * what the log describes); inside a slice, a SliceProbe re-runs it instruction by instruction from
 * a capture of the machine at the slice's first boundary, fed the time reads the replaying machine
 * made while it ran the slice. So the replaying machine is always one slice ahead of the slice being
 * looked at. A few slices' records (capture, time tape, length) are kept; moving back further
 * restores the nearest in-memory checkpoint of a recording made without the JIT, or replays a JIT
 * recording from its start (a machine restored from a capture would run its slices with another JIT
 * state than the recording had).
 *
 * Motion: `stepi` (one instruction; at a slice's end, the slice's end — timers, interrupts — comes
 * with it), `reverseStepi`, `cont` and `reverseCont` to the next or previous time execution reaches
 * a breakpoint address (linear; the probe runs freely between, see SliceProbe.runUntil), and the
 * ends of the recording ("end", "begin").
 *
 * (Over 400 lines, kept whole: records, checkpoints, anchors and the probe are one position's
 * state, which every motion reads and moves; split apart they would pass it back and forth.)
 */
import type { LoadedMachine } from "../emulator/machine-config.js";
import { loadMachine } from "../emulator/machine-config.js";
import type { Registers } from "../emulator/machine-view.js";
import type { TimeTape } from "../emulator/time-tape.js";
import { CheckpointBusyError, type MachineCheckpoint } from "../emulator/v86-machine.js";
import { captureSession, decodeCheckpoint, encodeCheckpoint, sessionFromCheckpoint } from "./checkpoint.js";
import { ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import { LogReader, type LogHeader } from "./log-file.js";
import { checkHeader, imageForHeader } from "./log-header.js";
import { MachineSession } from "./machine-session.js";
import { Replayer, type ReplayEnd } from "./replayer.js";
import { SliceProbe } from "./slice-probe.js";

export interface Position {
  slice: number;
  instruction: number;
}

export type Stop = "step" | "breakpoint" | "end" | "begin";

interface SliceRecord {
  /** The slice starts at boundary `slice`. */
  slice: number;
  start: MachineCheckpoint;
  tape: TimeTape;
  instructions: number;
  /** The replaying machine right after the slice (before the next boundary's entries): what a probe must reach. */
  end: { registers: Registers; digest: string };
}

/** Records kept (each holds a copy of the machine's memory). */
const recordsKept = 3;
/**
 * A recording made without the JIT is checkpointed in memory (compressed) every this many slices as
 * it is replayed, and going back restores the nearest one instead of replaying from power-on (linux:
 * about 6 s of replay between two, 1.6 s to take one and 1.8 s to restore it). One made with the
 * JIT is not: a machine restored from a checkpoint runs with another JIT state than the recording
 * had (it decides how many instructions a slice holds).
 */
export const checkpointEverySlices = 2000;
/** Checkpoints kept at most; past that, every other one is dropped (they stay spread over the recording). */
const checkpointsKept = 32;

/** Anchors kept (a position and the address of its instruction: see `goto`). */
const anchorsKept = 100_000;

export class ReplayDebugger {
  private session!: MachineSession;
  private reader!: LogReader;
  private replayer!: Replayer;
  /** Where the log ended, once the replaying machine reached its end. */
  private ended: ReplayEnd | undefined;
  /** The next slice the replaying machine runs is to be taped. */
  private wantTape = false;
  /** Set while the replaying machine runs one slice: what it captured and taped. */
  private taping: { slice: number; start: MachineCheckpoint } | undefined;
  private taped: SliceRecord | undefined;
  private records: SliceRecord[] = [];
  private probe: SliceProbe | undefined;
  private record: SliceRecord | undefined;
  readonly breakpoints = new Set<number>();
  /**
   * Positions visited and the linear address of the instruction at each, by slice then instruction:
   * going back to a position runs freely to the nearest one before it (a trap at its address, counted
   * to its instruction) and steps from there, instead of stepping from the slice's start (slow, and
   * impossible through user code).
   */
  private anchors = new Map<number, Map<number, number>>();
  /** In-memory checkpoints of the replaying machine (see checkpointEverySlices), oldest first. */
  private checkpoints: Array<{ slice: number; bytes: Buffer; entries: number }> = [];
  /** Log entries read by the replayer from the recording's start. */
  private entriesRead = 0;
  private anchorCount = 0;
  /** Probes opened so far (each is a machine built and restored). */
  probesOpened = 0;
  /** Slices a probe ran to their end and found as the replay left them (see checkEnd). */
  endsChecked = 0;

  private constructor(
    readonly file: string,
    readonly header: LogHeader,
    private readonly loaded: LoadedMachine,
    private readonly checkpointEvery: number,
  ) {}

  /** `checkpointEverySlices`: in-memory checkpoints of a recording made without the JIT (0: none). */
  static async open(options: { file: string; image?: string; checkpointEverySlices?: number }): Promise<ReplayDebugger> {
    const reader = new LogReader(options.file);
    let header: LogHeader;
    let loaded: LoadedMachine;
    try {
      header = reader.header;
      loaded = loadMachine(imageForHeader(header, options.image, "The recording's machine"), { memoryMiB: header.machine.memoryMiB });
      checkHeader(header, loaded);
    } finally {
      reader.close();
    }
    const d = new ReplayDebugger(options.file, header, loaded, options.checkpointEverySlices ?? checkpointEverySlices);
    await d.restart();
    await d.goto({ slice: 0, instruction: 0 });
    return d;
  }

  /**
   * Replays from the recording's start again (boundary 0), or from the newest in-memory checkpoint
   * at or before boundary `before`.
   */
  private async restart(before = 0): Promise<void> {
    this.session?.close();
    this.reader?.close();
    const h = this.header;
    const options = { loaded: this.loaded, ...(h.disk ? { diskBytes: h.disk.bytes } : {}), clock: h.clock, ...(h.jit === false ? { jit: false } : {}), tape: true };
    const from = this.checkpoints.filter((c) => c.slice <= before).at(-1);
    this.reader = new LogReader(this.file);
    this.entriesRead = 0;
    if (from) {
      this.session = await sessionFromCheckpoint(options, await decodeCheckpoint(from.bytes, h.machine.memoryMiB));
      // the log goes on with the entries of the checkpoint's boundary (not applied when it was taken)
      for (; this.entriesRead < from.entries; this.entriesRead++) this.reader.next();
    } else this.session = await MachineSession.open(options);
    const machine = this.session.machine;
    const tape = this.session.tape!;
    this.ended = undefined;
    const next = () => {
      const e = this.reader.next();
      if (e) this.entriesRead++;
      return e;
    };
    this.replayer = new Replayer(this.session.driver, next, {
      beforeSlice: (slice) => {
        if (!this.wantTape) return;
        let start: MachineCheckpoint;
        try {
          start = machine.captureCheckpoint({ forProbe: true });
        } catch (e) {
          if (!(e instanceof CheckpointBusyError)) throw e;
          throw new LockstepError(ErrorCode.debugUnsupported, `Slice ${slice + 1} starts with a disk request in flight: it cannot be stepped (its completion lives inside v86)`, "step from a boundary where the guest waits for no disk request");
        }
        this.taping = { slice, start };
        tape.start();
      },
      onSlice: (result) => {
        const t = this.taping;
        if (!t) return;
        const end = { registers: machine.registers(), digest: machine.digest({ ignorePreviousIp: true }) };
        this.taped = { slice: t.slice, start: t.start, tape: tape.stop(), instructions: result.instructions, end };
        this.taping = undefined;
      },
    });
  }

  /** The replaying machine runs its next slice and keeps its record; undefined at the log's end. */
  private advance(): SliceRecord | undefined {
    if (this.ended) return undefined;
    this.taped = undefined;
    this.wantTape = true;
    let end: ReplayEnd | undefined;
    try {
      end = this.replayer.step(1);
    } finally {
      this.wantTape = false;
    }
    if (end) this.ended = end;
    const r = this.taped;
    if (!r) return undefined;
    this.records.push(r);
    if (this.records.length > recordsKept) this.records.shift();
    return r;
  }

  /** The record of the slice starting at boundary `slice` (replaying forward, or again from the start). */
  private async recordFor(slice: number): Promise<SliceRecord | undefined> {
    const kept = this.records.find((r) => r.slice === slice);
    if (kept) return kept;
    const next = this.session.driver.slice; // the replaying machine's boundary: its next slice starts there
    if (slice < next) {
      await this.restart(slice);
      this.records = [];
    }
    for (;;) {
      const d = this.session.driver.slice;
      if (d < slice) {
        // not kept: run the slices before it whole
        await this.maybeCheckpoint();
        const end = this.replayer.step(1);
        if (end) {
          this.ended = end;
          return undefined;
        }
        continue;
      }
      const r = this.advance();
      if (!r || r.slice >= slice) return r && r.slice === slice ? r : undefined;
    }
  }

  /**
   * At every checkpointEverySlices-th boundary of a recording made without the JIT, before the
   * boundary's entries are applied: an in-memory checkpoint, unless one is kept there (or a disk
   * request is in flight: the next boundary then).
   */
  private async maybeCheckpoint(): Promise<void> {
    const driver = this.session.driver;
    const at = driver.slice;
    const last = this.checkpoints.at(-1)?.slice ?? 0;
    if (this.header.jit !== false || this.checkpointEvery <= 0 || at === 0 || at - last < this.checkpointEvery || this.checkpoints.some((c) => c.slice === at)) return;
    let bytes: Buffer;
    try {
      driver.machine.clearJit(); // (no JIT: nothing to clear; a capture asks for it)
      bytes = await encodeCheckpoint(captureSession(driver));
    } catch (e) {
      if (e instanceof CheckpointBusyError) return;
      throw e;
    }
    const entries = this.entriesRead - (this.replayer.holdsEntry ? 1 : 0);
    this.checkpoints.push({ slice: at, bytes, entries });
    this.checkpoints.sort((a, b) => a.slice - b.slice);
    // thinned from the newest back (the one just taken stays: it is where the replay is)
    if (this.checkpoints.length > checkpointsKept) this.checkpoints = this.checkpoints.filter((_, i, all) => (all.length - 1 - i) % 2 === 0);
  }

  /** Checkpoints kept in memory now (their boundaries). */
  get checkpointSlices(): number[] {
    return this.checkpoints.map((c) => c.slice);
  }

  /** The probe, on `record`'s slice from its start (one machine, restored again each time). */
  private async openProbe(record: SliceRecord): Promise<SliceProbe> {
    this.record = record;
    if (this.probe) this.probe.reload(record);
    else this.probe = await SliceProbe.open(this.loaded, record, this.header.disk?.bytes);
    this.probesOpened++;
    return this.probe;
  }

  /** Moves to a position (its slice must exist; an instruction past the slice's end stops at its end). */
  async goto(pos: Position): Promise<void> {
    const record = await this.recordFor(pos.slice);
    if (!record) {
      if (pos.slice === 0 && pos.instruction === 0) return; // an empty recording: nothing to look at but the start
      throw new LockstepError(ErrorCode.pastEnd, `The recording has no slice after boundary ${pos.slice}`, "a position within the recording");
    }
    const p = await this.openProbe(record);
    const target = Math.min(pos.instruction, record.instructions);
    let from: [number, number] | undefined;
    for (const a of this.anchors.get(pos.slice) ?? []) if (a[0] <= target && a[0] > 0 && (!from || a[0] > from[0])) from = a;
    if (from && !this.runToAnchor(p, from[0], from[1])) p.reload(record);
    while (p.executed < target && p.left > 0) p.step();
    if (p.left === 0) await this.nextBoundary();
    else this.noteAnchor();
  }

  /** Runs the probe, from its slice's start, freely to its `index`th instruction, known to be at `eip`. */
  private runToAnchor(p: SliceProbe, index: number, eip: number): boolean {
    const at = new Set([eip]);
    while (p.executed < index) {
      if (p.stepper.linearEip === eip) p.step();
      else if (p.runUntil(at) === "end") return false;
    }
    return p.executed === index && p.stepper.linearEip === eip;
  }

  /** Remembers where the debugger is and the instruction's address there. */
  private noteAnchor(): void {
    if (!this.probe || this.probe.left === 0) return;
    const { slice, instruction } = this.position;
    if (instruction === 0) return;
    if (this.anchorCount >= anchorsKept) {
      this.anchors.clear();
      this.anchorCount = 0;
    }
    let m = this.anchors.get(slice);
    if (!m) this.anchors.set(slice, (m = new Map()));
    if (!m.has(instruction)) this.anchorCount++;
    m.set(instruction, this.linearEip);
  }

  /**
   * The probe ran its slice's last instruction: on to the next boundary, as the next slice starts
   * from it (with what the log delivers there applied: typed input, completed disk reads); at the
   * recording's end, the slice's end in the probe.
   */
  private async nextBoundary(): Promise<void> {
    const r = this.record!;
    this.probe!.finish();
    this.checkEnd(r);
    const next = await this.recordFor(r.slice + 1);
    if (next) await this.openProbe(next);
    else {
      // recordFor may have replayed from the start: the probe is this slice's again, stepped to its end
      if (this.record !== r) {
        const p = await this.openProbe(r);
        while (p.step());
        p.finish();
      }
    }
  }

  /**
   * The probe ran the whole slice: it must hold what the replaying machine held after it. Where it
   * does not, the recording was made with v86's JIT, whose instruction counts and interrupt points
   * differ from its interpreter's (a block that faults counts all its instructions; a block's exit
   * takes pending interrupts); a recording made with `--no-jit` replays in the interpreter too.
   */
  private checkEnd(r: SliceRecord): void {
    const m = this.probe!.machine;
    if (m.digest({ ignorePreviousIp: true }) === r.end.digest) {
      this.endsChecked++;
      return;
    }
    const jit = this.header.jit !== false;
    throw new LockstepError(
      ErrorCode.debugUnsupported,
      `Slice ${r.slice + 1} did not come out the same stepped instruction by instruction as replayed whole (EIP 0x${m.registers().eip.toString(16)}, replay 0x${r.end.registers.eip.toString(16)}): what was shown inside it may be wrong`,
      jit
        ? "the recording was made with v86's JIT, whose instruction counts differ from its interpreter's where an instruction faults: record with --no-jit to debug instruction by instruction (or report it)"
        : "please report it: stepping must reach the slice's end exactly",
      { slice: r.slice + 1 },
    );
  }

  /** Where the debugger is (the recording's last slice run to its end: its last boundary). */
  get position(): Position {
    const r = this.record;
    if (!r || !this.probe) return { slice: 0, instruction: 0 };
    return this.probe.left === 0 ? { slice: r.slice + 1, instruction: 0 } : { slice: r.slice, instruction: this.probe.executed };
  }

  registers(): Registers {
    return this.machine().registers();
  }

  /** A digest of the whole machine shown (CPU, devices, RAM): two positions with equal ones are the same state. */
  digest(): string {
    return this.machine().digest({ ignorePreviousIp: true });
  }

  /** Where the interrupt descriptor table is now. */
  interruptTable(): { base: number; limit: number } {
    return this.machine().interruptTable();
  }

  /** Guest memory at a linear address (read-only page walk); throws ADDRESS_UNMAPPED. */
  readMemory(address: number, length: number): Uint8Array {
    return this.machine().readLinear(address, length);
  }

  private machine() {
    return this.probe ? this.probe.machine : this.session.machine;
  }

  /** The linear address of the next instruction. */
  get linearEip(): number {
    return this.probe ? this.probe.stepper.linearEip : 0;
  }

  /** One instruction forward. */
  async stepi(): Promise<Stop> {
    // at a slice's end: the next slice (slices without instructions pass by)
    while (!this.probe || this.probe.left === 0) {
      const at = this.position.slice;
      const next = await this.recordFor(at);
      if (!next) return "end";
      await this.openProbe(next);
    }
    this.probe.step();
    if (this.probe.left === 0) await this.nextBoundary();
    this.noteAnchor();
    return this.breakpoints.has(this.linearEip) ? "breakpoint" : "step";
  }

  /** One instruction back. */
  async reverseStepi(): Promise<Stop> {
    const pos = this.position;
    if (pos.instruction > 0) {
      await this.goto({ slice: pos.slice, instruction: pos.instruction - 1 });
      return this.breakpoints.has(this.linearEip) ? "breakpoint" : "step";
    }
    // the last instruction of the nearest slice before with any
    for (let k = pos.slice - 1; k >= 0; k--) {
      const r = await this.recordFor(k);
      if (r && r.instructions > 0) {
        await this.goto({ slice: k, instruction: r.instructions - 1 });
        return this.breakpoints.has(this.linearEip) ? "breakpoint" : "step";
      }
    }
    await this.goto({ slice: 0, instruction: 0 });
    return "begin";
  }

  /**
   * Forward until execution reaches a breakpoint (after at least one instruction), or the end. The
   * probe runs freely with traps at the breakpoints, slice after slice (see SliceProbe.runUntil).
   */
  async cont(): Promise<Stop> {
    if (!this.probe || this.probe.left === 0 || this.breakpoints.has(this.linearEip)) {
      const s = await this.stepi(); // off the breakpoint here, or into the next slice
      if (s !== "step") return s;
    }
    for (;;) {
      const p = this.probe!;
      const r = this.record!;
      if (p.runUntil(this.breakpoints) === "hit") {
        this.noteAnchor();
        return "breakpoint";
      }
      this.checkEnd(r); // it ran the slice to its end: as the replay did?
      const next = await this.recordFor(r.slice + 1);
      if (!next) {
        // the recording's end: the probe shows it (recordFor may have replayed from the start)
        if (this.record !== r) await this.toSliceEnd(r);
        return "end";
      }
      await this.openProbe(next);
      if (this.breakpoints.has(this.linearEip)) return "breakpoint";
    }
  }

  /** The probe on `r`'s slice, run to its end (freely where that lands on it, else step by step). */
  private async toSliceEnd(r: SliceRecord): Promise<void> {
    (await this.openProbe(r)).runUntil(new Set());
    this.checkEnd(r);
  }

  /**
   * Walks `r`'s slice from its start through the breakpoint hits before instruction `limit`: with
   * `stopAt`, stops at that hit (1 the first) and returns it; else counts them all.
   */
  private async hitsIn(r: SliceRecord, limit: number, stopAt?: number): Promise<number> {
    const p = await this.openProbe(r);
    let hits = 0;
    while (p.executed < limit) {
      if (this.breakpoints.has(p.stepper.linearEip)) {
        if (++hits === stopAt) {
          this.noteAnchor();
          return hits;
        }
        p.step();
        continue;
      }
      if (p.runUntil(this.breakpoints) === "end") break;
    }
    return hits;
  }

  /** Backward to the last time execution reached a breakpoint before here, or the start. */
  async reverseCont(): Promise<Stop> {
    let { slice, instruction: limit } = this.position;
    for (;;) {
      // the last hit in this slice before `limit` instructions: stepped once through, forwards
      const r = slice >= 0 ? await this.recordFor(slice) : undefined;
      if (r && limit > 0) {
        const hits = await this.hitsIn(r, limit);
        if (hits > 0) {
          await this.hitsIn(r, limit, hits);
          return "breakpoint";
        }
      }
      if (slice <= 0) {
        await this.goto({ slice: 0, instruction: 0 });
        return "begin";
      }
      slice--;
      const before = await this.recordFor(slice);
      limit = before ? before.instructions : 0;
    }
  }

  close(): void {
    this.probe?.close();
    this.session?.close();
    this.reader?.close();
  }
}
