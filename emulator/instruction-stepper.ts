/**
 * InstructionStepper: runs a probe machine one instruction at a time, which v86 cannot do by itself
 * (its main loop checks its instruction budget only between blocks and it has no trap flag).
 *
 * How: before each step the stepper decodes the instruction at EIP (x86-decode.ts), works out every
 * address where the next instruction can start — the fall-through; a jump's, call's or return's
 * target, read from the instruction, the registers or the stack; the entry of every interrupt and
 * exception handler in the IDT (a fault, a software interrupt, an interrupt the instruction lets in)
 * — and writes a HLT (F4) at each. The machine runs (interpreter only: the probe has no JIT); the
 * first of those HLTs it reaches calls v86's time import (`microtick`, with interrupts enabled) or
 * its halt event (disabled), where the stepper throws to unwind out of wasm. The HLT had not taken
 * The stepper answers that read itself and clears IF for the moment, so that the HLT's own timer
 * run and interrupt check do nothing; v86 ends the block at the HLT and its main loop returns,
 * halted. (Throwing out of wasm instead would leave v86's shadow stack pointer where the unwound
 * frames had moved it: a few thousand steps and its stack overflows.) The stepper then clears
 * `in_hlt`, puts EIP back on the trap, IF back as it was, and every byte it wrote back (but one the
 * instruction itself wrote meanwhile). One step, exactly.
 *
 * Limits, each reported as a StepError: HLT traps only at CPL 0 (in user mode HLT raises #GP), so a
 * step whose next instruction runs at CPL 3 cannot stop there; a repeated string instruction runs
 * one round per step (v86 counts each round as an instruction, and re-runs it at the same address);
 * far transfers through call gates, task gates and task switches are refused. A probe never goes
 * on with the recorded timeline: its slice ends differently (see time-tape.ts).
 *
 * (About 580 lines, kept whole — v86's main-loop rounds included, see `roundStart`: working out the next instruction's addresses, planting, the trap
 * and its undoing are one mechanism whose invariants — what is planted, what the trap left — span
 * all of them.)
 */
import { ramView, translate, type CpuViews } from "./machine-view.js";
import { decode, effectiveAddress, type Decoded, type ModRm } from "./x86-decode.js";

/** v86's CPU internals the stepper reads and drives (views into wasm memory, and exports). */
export interface StepperCpu extends CpuViews {
  in_hlt: Uint8Array;
  previous_ip: Int32Array;
  flags: Int32Array;
  is_32: Int32Array;
  stack_size_32: Int32Array;
  idtr_offset: Int32Array;
  idtr_size: Int32Array;
  gdtr_offset: Int32Array;
  sysenter_eip: Int32Array;
  protected_mode: Int32Array;
  instruction_counter: Uint32Array;
  acpi_enabled: Uint8Array;
  main_loop(): number;
  handle_irqs(): void;
  run_hardware_timers(acpi: boolean, now: number): number;
  wm: { exports: Record<string, (...args: number[]) => unknown> };
}

/** What a probe machine gives the stepper: its CPU, and a way to run guest code (its globals swapped in). */
export interface ProbeAccess {
  cpu: StepperCpu;
  run<T>(f: () => T): T;
  /** Registers a handler for v86's halt event (HLT with interrupts disabled). */
  onHalt(f: () => void): void;
}

export class StepError extends Error {
  constructor(
    readonly why: "user-mode" | "unsupported" | "ran-away",
    message: string,
  ) {
    super(message);
  }
}

const FLAG_IF = 1 << 9;
/** v86's LOOP_COUNTER: a main-loop round's instruction budget. */
export const roundBudget = 100_003;
const FLAG_VM = 1 << 17;
const CS = 1;
const SS = 2;
const LDTR = 7;

export class InstructionStepper {
  /** Physical address -> the byte a HLT replaced, while a step runs. */
  private readonly planted = new Map<number, number>();
  /** Linear addresses of the planted HLTs. */
  private readonly armed = new Set<number>();
  /** The planted HLT reached, while the machine runs out of its main loop from it. */
  private trapped: number | undefined;
  private savedIf = 0;
  /** Instructions stepped since the stepper was made. */
  steps = 0;
  /**
   * The instruction counter where v86's current main-loop round began. A round runs until its
   * budget (LOOP_COUNTER instructions, counted from where the round's first block began, checked
   * where blocks end) or a HLT; then the main loop runs the timers and interrupts and, while its
   * time allows, starts another round. Each entry of the main loop here would count its budget
   * afresh, so a run that continues a round starts on a HLT planted at EIP with interrupts masked:
   * v86 reports the halt, and there (its budget's start read already) the stepper takes the HLT
   * out, unmasks, and raises the counter by what the round had run. The round's end (timers,
   * interrupts, a read of the time) then comes at the instruction where the replaying machine's did.
   */
  private roundStart = 0;
  /** While the main loop runs: what the counter was raised by. */
  private counterOffset = 0;
  /** A run continuing a round: the HLT planted at its first instruction (linear, physical, the byte it replaced). */
  private resume: { at: number; phys: number; byte: number; offset: number; interrupts: number } | undefined;
  /** A HLT ran the timers and nothing has woken the CPU since: the next timer run is the round's end. */
  private haltPending = false;
  /** A round ended during this run of the main loop. */
  private roundEnded = false;
  /** Where rounds ended by their budget (counter values), since `startRound`. */
  readonly budgetEnds: number[] = [];

  constructor(private readonly probe: ProbeAccess) {
    probe.onHalt(() => this.resumed() || this.check());
    // v86's time import calls this through the CPU object: while trapped, the timers stay still
    const cpu = probe.cpu;
    const timers = cpu.run_hardware_timers.bind(cpu);
    cpu.run_hardware_timers = (acpi, now) => {
      if (this.trapped !== undefined) return 0;
      this.noteTimers();
      return timers(acpi, now);
    };
    const stopIdling = (cpu as unknown as { stop_idling(): void }).stop_idling.bind(cpu);
    (cpu as unknown as { stop_idling(): void }).stop_idling = () => {
      this.haltPending = false; // an interrupt woke the CPU inside the round
      stopIdling();
    };
  }

  /** The probe is at a slice's start: a round begins here. */
  startRound(): void {
    this.roundStart = this.cpu.instruction_counter[0]!;
    this.haltPending = false;
    this.budgetEnds.length = 0;
  }

  /**
   * A round the replaying machine ended by its budget here (a step cannot: each step's main loop
   * counts afresh, and its blocks end elsewhere): the round's end as v86's main loop makes it.
   */
  endRound(nowMs: () => number): void {
    this.finishSlice(nowMs);
    this.roundStart = this.cpu.instruction_counter[0]!;
  }

  /**
   * v86 runs its timers (not for a planted HLT): at a round's end, or in a HLT the guest executed.
   * A running CPU's round ended by its budget; a HLT runs them itself, and unless an interrupt woke
   * the CPU (v86 then calls stop_idling) the round ends right after and runs them again.
   */
  private noteTimers(): void {
    const cpu = this.cpu;
    if (cpu.in_hlt[0] === 1 && !this.haltPending) {
      this.haltPending = true;
      return;
    }
    this.roundStart = (cpu.instruction_counter[0]! - this.counterOffset) >>> 0;
    if (cpu.in_hlt[0] === 0) this.budgetEnds.push(this.roundStart);
    this.roundEnded = true;
    this.haltPending = false;
  }

  /** Runs v86's main loop as a continuation of the current round (see roundStart). */
  private mainLoop(continueRound: boolean): void {
    const cpu = this.cpu;
    const offset = (cpu.instruction_counter[0]! - this.roundStart) >>> 0;
    this.counterOffset = 0;
    this.roundEnded = false;
    if (continueRound && offset > 0 && cpu.in_hlt[0] === 0) {
      if (cpu.cpl[0] !== 0) throw new StepError("user-mode", "the probe would go on from user mode (CPL 3) inside a slice, where it cannot keep v86's round");
      const at = this.linearEip;
      const phys = translate(cpu, at);
      const ram = ramView(cpu);
      this.resume = { at, phys, byte: ram[phys]!, offset, interrupts: cpu.flags[0]! & FLAG_IF };
      ram[phys] = 0xf4;
      cpu.flags[0] = cpu.flags[0]! & ~FLAG_IF; // so that the HLT reports a halt and runs no timers
    }
    try {
      this.probe.run(() => cpu.main_loop());
    } finally {
      const r = this.resume;
      if (r) {
        // never reached (the run stopped before its first instruction): as it was
        ramView(cpu)[r.phys] = r.byte;
        cpu.flags[0] = cpu.flags[0]! | r.interrupts;
        this.resume = undefined;
      }
      cpu.instruction_counter[0] = (cpu.instruction_counter[0]! - this.counterOffset) >>> 0;
      this.counterOffset = 0;
    }
  }

  /** The halt of a run's first HLT (see roundStart): the instruction it stood for runs next, in the round. */
  private resumed(): boolean {
    const r = this.resume;
    const cpu = this.cpu;
    if (!r || cpu.in_hlt[0] !== 1 || ((cpu.instruction_pointer[0]! - 1) >>> 0) !== r.at) return false;
    this.resume = undefined;
    ramView(cpu)[r.phys] = r.byte;
    cpu.flags[0] = cpu.flags[0]! | r.interrupts;
    cpu.in_hlt[0] = 0;
    cpu.instruction_pointer[0] = r.at | 0;
    // the HLT is counted when its block ends: it stands for nothing
    cpu.instruction_counter[0] = (cpu.instruction_counter[0]! + r.offset - 1) >>> 0;
    this.counterOffset = r.offset;
    return true;
  }

  /**
   * Called at every time read of the probe (and at its halt event): true when the read comes from a
   * planted HLT (or from v86's main loop on its way out after one), which the caller then answers
   * without the tape.
   */
  check(): boolean {
    if (this.trapped !== undefined) return true;
    const cpu = this.probe.cpu;
    if (cpu.in_hlt[0] !== 1 || this.armed.size === 0) return false;
    const at = (cpu.instruction_pointer[0]! - 1) >>> 0;
    if (!this.armed.has(at)) return false;
    this.trapped = at;
    this.savedIf = cpu.flags[0]! & FLAG_IF;
    cpu.flags[0] = cpu.flags[0]! & ~FLAG_IF;
    return true;
  }

  private get cpu(): StepperCpu {
    return this.probe.cpu;
  }

  /** Instructions the current main-loop round has run. */
  get roundRan(): number {
    return (this.cpu.instruction_counter[0]! - this.roundStart) >>> 0;
  }

  /** v86's instruction counter now. */
  get counter(): number {
    return this.cpu.instruction_counter[0]!;
  }

  /** Linear EIP now. */
  get linearEip(): number {
    return this.cpu.instruction_pointer[0]! >>> 0;
  }

  /** The instruction at EIP, decoded (its bytes read through the page tables, read-only). */
  current(): Decoded {
    const cpu = this.cpu;
    const eipLinear = this.linearEip;
    const offset = (eipLinear - cpu.segment_offsets[CS]!) >>> 0;
    return decode((i) => this.byteAt(eipLinear + i), cpu.is_32[0] !== 0, offset);
  }

  private byteAt(linear: number): number {
    return ramView(this.cpu)[translate(this.cpu, linear >>> 0)]!;
  }

  /**
   * Executes exactly one instruction. Returns "halted" when it was a HLT that left the machine
   * halted (the slice ends there), else "stepped".
   */
  step(): "stepped" | "halted" | "ended" {
    const cpu = this.cpu;
    if (cpu.in_hlt[0] === 1) this.wake();
    if (cpu.cpl[0] !== 0) throw new StepError("user-mode", "the machine is in user mode (CPL 3): it can be inspected here, not stepped");
    const here = this.linearEip;
    const d = this.current();
    const targets = new Set<number>(this.handlerEntries());
    const flow = d.flow;
    const csBase = cpu.segment_offsets[CS]! >>> 0;
    const wrap = (offset: number) => (d.operand32 ? offset >>> 0 : offset & 0xffff);
    switch (flow.kind) {
      case "next":
        targets.add((here + d.length) >>> 0);
        break;
      case "relative":
        targets.add((csBase + flow.target) >>> 0);
        if (flow.conditional) targets.add((here + d.length) >>> 0);
        break;
      case "indirect": {
        const m = flow.modrm;
        const offset = m.mod === 3 ? cpu.reg32[m.rm]! : this.readOperand(m, d.operand32 ? 4 : 2);
        targets.add((csBase + wrap(offset)) >>> 0);
        break;
      }
      case "return":
        targets.add((csBase + wrap(this.readStack(0, d.operand32 ? 4 : 2))) >>> 0);
        break;
      case "far-direct":
        targets.add(this.farTarget(flow.selector, flow.offset));
        break;
      case "far": {
        const op = d.opcode;
        const size = d.operand32 ? 4 : 2;
        if (op === 0xcb || op === 0xca) targets.add(this.farTarget(this.readStack(size, 2), this.readStack(0, size)));
        else if (op === 0xff && d.modrm) {
          // FF /3, /5: a far pointer in memory, offset first
          const at = this.linearOf(d.modrm);
          targets.add(this.farTarget(this.readLinear16(at + size), size === 4 ? this.readLinear32(at) : this.readLinear16(at)));
        } else throw new StepError("unsupported", "stepping over syscall or sysret is not supported");
        break;
      }
      case "iret": {
        const size = d.operand32 ? 4 : 2;
        const eip = this.readStack(0, size);
        const cs = this.readStack(size, 2);
        const eflags = this.readStack(2 * size, size);
        if (cpu.protected_mode[0] !== 0 && (eflags & FLAG_VM) !== 0 && size === 4) targets.add(((cs << 4) + (eip & 0xffff)) >>> 0);
        else targets.add(this.farTarget(cs, eip));
        break;
      }
      case "interrupt":
        break; // the IDT's entries
      case "sysenter":
        targets.add(cpu.sysenter_eip[0]! >>> 0);
        break;
      case "sysexit":
        throw new StepError("user-mode", "sysexit returns to user mode (CPL 3): user code can be inspected at slice boundaries, not stepped");
      case "halt":
        break; // an interrupt may wake it inside the HLT: its handler
      case "repeat":
        return this.repeatRound(d);
    }
    // never plant in the instruction being stepped
    const r = this.runTo([...targets].filter((t) => ((t - here) >>> 0) >= d.length), flow.kind === "halt");
    if (r === "woken") throw new Error("unreachable");
    return r;
  }

  private linearOf(m: ModRm): number {
    const ea = effectiveAddress(m, this.cpu.reg32);
    return (this.cpu.segment_offsets[ea.segment]! + ea.offset) >>> 0;
  }

  private readOperand(m: ModRm, size: 2 | 4): number {
    const at = this.linearOf(m);
    return size === 4 ? this.readLinear32(at) : this.readLinear16(at);
  }

  private readLinear16(at: number): number {
    return this.byteAt(at) | (this.byteAt(at + 1) << 8);
  }

  private readLinear32(at: number): number {
    return (this.readLinear16(at) | (this.readLinear16(at + 2) << 16)) >>> 0;
  }

  /** `size` bytes at SS:ESP+`offset` (SP in a 16-bit stack segment). */
  private readStack(offset: number, size: number): number {
    const cpu = this.cpu;
    const sp = cpu.stack_size_32[0] !== 0 ? cpu.reg32[4]! >>> 0 : cpu.reg32[4]! & 0xffff;
    const at = (cpu.segment_offsets[SS]! + sp + offset) >>> 0;
    return size === 4 ? this.readLinear32(at) : this.readLinear16(at);
  }

  /** The linear address of selector:offset (real mode: selector × 16; protected: the descriptor's base). */
  private farTarget(selector: number, offset: number): number {
    const cpu = this.cpu;
    if (cpu.protected_mode[0] === 0) return ((selector << 4) + (offset & 0xffff)) >>> 0;
    if ((selector & 3) === 3) throw new StepError("user-mode", "the next instruction runs in user mode (CPL 3): user code can be inspected at slice boundaries, not stepped");
    return (this.segmentBase(selector) + offset) >>> 0;
  }

  private segmentBase(selector: number): number {
    const cpu = this.cpu;
    const table = selector & 4 ? cpu.segment_offsets[LDTR]! >>> 0 : cpu.gdtr_offset[0]! >>> 0;
    const at = (table + (selector & ~7)) >>> 0;
    const access = this.byteAt(at + 5);
    if ((access & 0x10) === 0) throw new StepError("unsupported", `a far transfer through a system descriptor (selector 0x${selector.toString(16)}: a gate or a task)`);
    return (this.byteAt(at + 2) | (this.byteAt(at + 3) << 8) | (this.byteAt(at + 4) << 16) | (this.byteAt(at + 7) << 24)) >>> 0;
  }

  /** The handler entries last read, and what they were read from (the IDT's bytes, where it was). */
  private handlers: { key: string; bytes: Uint8Array; phys: number; entries: number[] } | undefined;

  /**
   * Where every interrupt and exception handler starts, read again only when the IDT moved or its
   * bytes changed (reading 256 gates through the page tables at every step would cost milliseconds).
   */
  private handlerEntries(): number[] {
    const cpu = this.cpu;
    const key = `${cpu.idtr_offset[0]}:${cpu.idtr_size[0]}:${cpu.gdtr_offset[0]}:${cpu.cr[0]}:${cpu.cr[3]}:${cpu.cr[4]}:${cpu.protected_mode[0]}`;
    const size = cpu.protected_mode[0] === 0 ? 1024 : Math.min(2048, (cpu.idtr_size[0]! >>> 0) + 1);
    let phys = -1;
    let contiguous = false;
    try {
      phys = translate(cpu, cpu.idtr_offset[0]! >>> 0);
      // physically contiguous (within a page, or across two adjacent ones): compared in place
      contiguous = translate(cpu, ((cpu.idtr_offset[0]! >>> 0) + size - 1) >>> 0) === phys + size - 1 && phys + size <= cpu.memory_size[0]!;
    } catch {
      /* an IDT not mapped: read it entry by entry (each fails) */
    }
    const h = this.handlers;
    const ram = ramView(cpu);
    if (h && contiguous && h.key === key && h.phys === phys && Buffer.compare(h.bytes, ram.subarray(phys, phys + size)) === 0) return h.entries;
    const entries = this.readHandlerEntries();
    this.handlers = contiguous ? { key, bytes: ram.slice(phys, phys + size), phys, entries } : undefined;
    return entries;
  }

  /** Reads every handler entry (real mode: the IVT; protected: the IDT's gates). */
  private readHandlerEntries(): number[] {
    const cpu = this.cpu;
    const base = cpu.idtr_offset[0]! >>> 0;
    const out: number[] = [];
    if (cpu.protected_mode[0] === 0) {
      for (let v = 0; v < 256; v++) {
        try {
          out.push(((this.readLinear16(base + v * 4 + 2) << 4) + this.readLinear16(base + v * 4)) >>> 0);
        } catch {
          /* not in RAM */
        }
      }
      return out;
    }
    const count = Math.min(256, ((cpu.idtr_size[0]! >>> 0) + 1) >>> 3);
    for (let v = 0; v < count; v++) {
      try {
        const at = base + v * 8;
        const access = this.byteAt(at + 5);
        const type = access & 0x1f;
        if ((access & 0x80) === 0 || type === 5) continue; // not present, or a task gate
        const selector = this.readLinear16(at + 2);
        if ((selector & 3) === 3) continue;
        out.push((this.segmentBase(selector) + (this.readLinear16(at) | (this.readLinear16(at + 6) << 16))) >>> 0);
      } catch (e) {
        if (e instanceof StepError) continue;
      }
    }
    return out;
  }

  /**
   * A halted CPU (a slice that starts in HLT) first takes the interrupt that wakes it: v86's main
   * loop runs the timers and delivers it, which is no instruction (v86 counts none); the machine is
   * stopped on the handler's first instruction, not yet run.
   */
  private wake(): void {
    const cpu = this.cpu;
    const counter = cpu.instruction_counter[0]!;
    const previous = cpu.previous_ip[0]!;
    const r = this.runTo(this.handlerEntries(), false, true);
    if (r !== "woken") throw new StepError("ran-away", "the halted machine was not woken by an interrupt in this slice");
    cpu.instruction_counter[0] = counter;
    cpu.previous_ip[0] = previous;
  }

  /**
   * Runs v86's main loop freely (no step) with HLTs planted at `targets` (linear; breakpoints in
   * code that runs at CPL 0): it stops at the first one reached, or where the main loop ends by
   * itself. Returns whether a trap stopped it and the instructions run (the trap's HLT not counted).
   */
  runFree(targets: Iterable<number>): { trapped: boolean; instructions: number } {
    const cpu = this.cpu;
    const counterBefore = cpu.instruction_counter[0]!;
    this.plant(targets);
    this.trapped = undefined;
    try {
      this.mainLoop(true);
    } finally {
      this.unplant();
    }
    const at = this.trapped;
    const ran = (cpu.instruction_counter[0]! - counterBefore) >>> 0;
    if (at === undefined) return { trapped: false, instructions: ran };
    this.trapped = undefined;
    cpu.flags[0] = cpu.flags[0]! | this.savedIf;
    cpu.in_hlt[0] = 0;
    cpu.instruction_pointer[0] = at | 0;
    cpu.instruction_counter[0] = (cpu.instruction_counter[0]! - 1) >>> 0; // the HLT
    return { trapped: true, instructions: ran - 1 };
  }

  /** Writes a HLT at each target (linear) that is mapped, keeping the bytes it replaced. */
  private plant(targets: Iterable<number>): void {
    const cpu = this.cpu;
    const ram = ramView(cpu);
    const pages = new Map<number, number>(); // linear page -> physical page (-1: unmapped), for this step
    for (const t of targets) {
      let page = pages.get(t >>> 12);
      if (page === undefined) {
        try {
          page = translate(cpu, t & ~0xfff) >>> 12;
        } catch {
          page = -1;
        }
        pages.set(t >>> 12, page);
      }
      if (page < 0) continue; // unmapped: reaching it faults, and the fault's handler is planted
      const phys = page * 4096 + (t & 0xfff);
      if (phys >= ram.length) continue;
      if (!this.planted.has(phys)) this.planted.set(phys, ram[phys]!);
      ram[phys] = 0xf4;
      this.armed.add(t);
    }
  }

  /** Plants HLTs at `targets`, runs to the first one reached, and takes them out. */
  private runTo(targets: number[], isHalt: boolean, waking = false): "stepped" | "halted" | "woken" | "ended" {
    const cpu = this.cpu;
    const here = this.linearEip;
    this.plant(targets);
    this.trapped = undefined;
    const counterBefore = cpu.instruction_counter[0]!;
    try {
      this.mainLoop(false);
    } finally {
      this.unplant();
    }
    const at = this.trapped;
    if (at === undefined) {
      if (waking) return "halted"; // no interrupt came: still halted
      // the instruction ended the round's budget and the main loop's time: the slice's end, made by v86
      if (this.roundEnded && cpu.in_hlt[0] === 0 && ((cpu.instruction_counter[0]! - counterBefore) >>> 0) === 1) {
        this.steps++;
        return "ended";
      }
      // main_loop came back without reaching a trap: a HLT that stays halted ends the slice there
      if (isHalt && cpu.in_hlt[0] === 1) {
        this.steps++;
        cpu.instruction_counter[0] = (counterBefore + 1) >>> 0;
        return "halted";
      }
      throw new StepError("ran-away", `the probe did not stop after the instruction at 0x${(this.linearEip >>> 0).toString(16)} (a target this stepper did not foresee)`);
    }
    this.trapped = undefined;
    cpu.flags[0] = cpu.flags[0]! | this.savedIf;
    cpu.in_hlt[0] = 0;
    cpu.instruction_pointer[0] = at | 0;
    cpu.previous_ip[0] = here | 0; // as v86's interpreter leaves it: the last instruction's start
    if (waking) return "woken";
    cpu.instruction_counter[0] = (counterBefore + 1) >>> 0;
    this.steps++;
    return "stepped";
  }

  /**
   * One round of a repeated string instruction (what v86 counts as one instruction; it runs the
   * instruction again at the same address while rounds remain, where no trap can be planted): run
   * through v86's own export for it, as its interpreter would, with EIP past the instruction; the
   * export puts EIP back when rounds remain.
   */
  private repeatRound(d: Decoded): "stepped" {
    const cpu = this.cpu;
    const here = this.linearEip;
    const op = d.opcode;
    const width = op & 1 ? (d.operand32 ? "d" : "w") : "b";
    const name = { 0xa4: "movs", 0xa5: "movs", 0xa6: "cmps", 0xa7: "cmps", 0xaa: "stos", 0xab: "stos", 0xac: "lods", 0xad: "lods", 0xae: "scas", 0xaf: "scas", 0x6c: "ins", 0x6d: "ins", 0x6e: "outs", 0x6f: "outs" }[op];
    const compares = name === "cmps" || name === "scas";
    const fn = cpu.wm.exports[`${name}${width}_${compares ? (d.repnz ? "repnz" : "repz") : "rep"}`];
    if (!name || !fn) throw new StepError("unsupported", `no v86 export for the string instruction 0x${op.toString(16)}`);
    cpu.previous_ip[0] = here | 0;
    cpu.instruction_pointer[0] = (here + d.length) | 0;
    const counterBefore = cpu.instruction_counter[0]!;
    // stos, lods, scas, ins take no segment (ES or DS fixed); movs, cmps, outs take the source's
    const asize32 = d.address32 ? 1 : 0;
    this.probe.run(() => (name === "stos" || name === "scas" || name === "ins" ? fn(asize32) : fn(asize32, d.segment ?? 3)));
    cpu.instruction_counter[0] = (counterBefore + 1) >>> 0;
    this.steps++;
    return "stepped";
  }

  private unplant(): void {
    const cpu = this.cpu;
    const ram = ramView(cpu);
    for (const [phys, byte] of this.planted) {
      // a byte the instruction wrote meanwhile is its own
      if (ram[phys] === 0xf4) ram[phys] = byte;
    }
    this.planted.clear();
    this.armed.clear();
  }

  /** The end of a slice as v86's main loop makes it after its instruction budget: the timers, then interrupts. */
  finishSlice(nowMs: () => number): void {
    const cpu = this.cpu;
    this.probe.run(() => {
      cpu.run_hardware_timers(cpu.acpi_enabled[0] === 1, nowMs());
      cpu.handle_irqs();
    });
  }

  /** Interrupts are enabled (IF). */
  get interruptsEnabled(): boolean {
    return (this.cpu.flags[0]! & FLAG_IF) !== 0;
  }
}
