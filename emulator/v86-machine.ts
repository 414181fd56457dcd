/**
 * V86Machine: the only code that knows v86's internals. It builds a headless v86 from a loaded
 * machine config, takes over every source of time, randomness and scheduling (see
 * guest-environment.ts and deferred-jit.ts), and exposes a machine that runs exactly one slice (one
 * `cpu.main_loop()` call) when asked and at no other time.
 *
 * Invariants:
 *   - v86 never schedules itself: `autostart` is off, `yield` and `stop_idling` are no-ops.
 *   - Guest code only runs inside `runSlice()`, and only with the guest globals swapped in.
 *   - Inputs (`sendSerial`, `sendKeys`) are applied immediately, so callers must only call them
 *     between slices: that is what makes them injectable at exact instruction counts.
 *   - The 64-bit instruction count extends v86's u32 counter (wasm byte 664) across wraps.
 */
import { liveView } from "./live-view.js";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { V86 } from "v86";
import { BounceDisk, type DiskRequest } from "./bounce-disk.js";
import { DeferredJit, type JitCpu } from "./deferred-jit.js";
import { GuestGlobals, type GuestEnvironment } from "./guest-environment.js";
import { macBytes, type LoadedMachine } from "./machine-config.js";
import { ReadOnlyImage } from "./read-only-image.js";
import { readTextScreen, type TextScreen } from "./text-screen.js";
import { readGraphicsScreen, type GraphicsScreen } from "./vga-graphics.js";
import { readLinear, readRegisters, type CpuViews, type Registers } from "./machine-view.js";
import { loadHasher, ramDigest, stateDigest } from "./state-digest.js";
import { configuredWasmTier, useWasmTier, type WasmTier } from "./wasm-tier.js";
import type { ProbeAccess, StepperCpu } from "./instruction-stepper.js";

/** The parts of v86's internal CPU object lockstep uses (property names survive minification). */
interface V86Cpu extends JitCpu {
  main_loop(): number;
  in_hlt: Uint8Array;
  instruction_counter: Uint32Array;
  mem8: Uint8Array;
  memory_size: Uint32Array;
  stop_idling: () => void;
  devices: Record<string, any>;
  jit_clear_cache(): void;
  last_result: Int32Array;
  mxcsr: Int32Array;
  fpu_status_word: Uint16Array;
  fw_pointer: number;
  jit_clear_all_funcs(): void;
}

/**
 * A whole machine at a slice boundary: v86's own device state, all of
 * wasm memory (CPU state, RAM, the JIT's and the allocator's structures, hidden statics), and the JS
 * state save_state misses. Taken right after the JIT cache was cleared at that boundary (a logged
 * checkpoint entry), so the original, the restored machine and any replayer of the log all go on
 * with equal, empty JIT caches.
 */
export interface MachineCheckpoint {
  icount: number;
  /** v86's u32 instruction counter at the boundary (wasm byte 664). */
  counter: number;
  devices: Uint8Array;
  memory: Uint8Array;
  hidden: {
    kbd: number[];
    mouse: number[];
    ps2: { nextByteIsReady: boolean; nextByteIsAux: boolean; wheelMovement: number; lastMousePacket: number };
    uartInput: number[][];
    fwPointer: number;
    /** The CD drive had no medium (the guest ejected it): a restored machine, given the file again, must not either. */
    cdromEjected?: true;
  };
  /** The BounceDisk's next request id (a checkpoint is taken with no disk request in flight). */
  diskNextId: number | null;
}

interface V86Internal {
  cpu: V86Cpu;
  save_state(): ArrayBuffer;
  restore_state(state: ArrayBuffer): void;
  yield: (t: number, tick: number) => void;
  constructor: { microtick: () => number };
}

export interface MachineOptions {
  loaded: LoadedMachine;
  /** Size in bytes of the guest's hard disk (hda), a BounceDisk: its I/O completes only through `disk.complete`. */
  diskBytes?: number;
  /** Time and randomness the guest sees. */
  env: GuestEnvironment;
  /** Generated-code JIT (default on; deterministic through the deferred-sync JIT). */
  jit?: boolean;
  /** V8's wasm compiler for v86 and its JIT output (default: LOCKSTEP_WASM_TIER, else baseline); see wasm-tier.ts. */
  wasmTier?: WasmTier;
}

export interface SliceResult {
  /** 64-bit instruction count at the end of the slice. */
  icount: number;
  /** Instructions the slice ran. */
  instructions: number;
  /** The guest halted (HLT) at the end of the slice. */
  halted: boolean;
  /** v86's time to its next timer deadline, in ms (meaningful when halted). */
  nextDeadlineMs: number;
  /** Serial (COM1) bytes the guest wrote during the slice, or null. */
  serial: Uint8Array | null;
  /** Disk requests the guest issued during the slice (they complete only through `disk`). */
  diskRequests: DiskRequest[];
  /** Ethernet frames the guest's NIC sent during the slice (copies), or null. */
  net: Uint8Array[] | null;
}

/** The parts of v86's ne2k lockstep reads and sets (see `netRoom`). */
interface Ne2k {
  mac: Uint8Array;
  memory: Uint8Array;
  cr: number;
  boundary: number;
  curpg: number;
  pstart: number;
  pstop: number;
}

const noRequests: DiskRequest[] = [];

/** A checkpoint cannot be taken at this boundary (try a later one). */
export class CheckpointBusyError extends Error {}
/** A checkpoint does not fit this machine. */
export class CheckpointMismatchError extends Error {}

const uarts = (cpu: V86Cpu): Array<{ input: number[] }> => ["uart0", "uart1", "uart2", "uart3"].map((n) => cpu.devices[n]).filter(Boolean);

let wasmModule: WebAssembly.Module | undefined;
function v86WasmModule(): WebAssembly.Module {
  if (!wasmModule) {
    const require = createRequire(import.meta.url);
    const path = require.resolve("v86/build/v86.wasm");
    wasmModule = new WebAssembly.Module(readFileSync(path));
  }
  return wasmModule;
}

/** The version of the v86 package, recorded in log headers. */
export function v86Version(): string {
  const require = createRequire(import.meta.url);
  return (require("v86/package.json") as { version: string }).version;
}

const toArrayBuffer = (bytes: Uint8Array): ArrayBuffer =>
  bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;

export class V86Machine {
  private icount64 = 0;
  private lastCounter = 0;
  private serialOut: number[] = [];
  private netOut: Uint8Array[] = [];
  private destroyed = false;
  private jitClearedAtBoundary = false;

  private constructor(
    private readonly emulator: V86,
    private readonly internal: V86Internal,
    private readonly globals: GuestGlobals,
    readonly jit: DeferredJit,
    readonly disk: BounceDisk | undefined,
    private readonly microtick: () => number,
    private readonly cdrom: ReadOnlyImage | undefined,
  ) {
    emulator.add_listener("serial0-output-byte", (byte: number) => {
      this.serialOut.push(byte);
    });
    // the frame is a view of the NIC's memory: copied before the guest overwrites it
    emulator.add_listener("net0-send", (frame: Uint8Array) => {
      this.netOut.push(frame.slice());
    });
    this.lastCounter = internal.cpu.instruction_counter[0]!;
  }

  static async create(options: MachineOptions): Promise<V86Machine> {
    useWasmTier(options.wasmTier ?? configuredWasmTier());
    await loadHasher();
    const { loaded, env } = options;
    const { config, files } = loaded;
    const module = v86WasmModule();
    const globals = new GuestGlobals(env);
    const disk = options.diskBytes !== undefined ? new BounceDisk(options.diskBytes) : undefined;
    const settings: Record<string, unknown> = {
      wasm_fn: async (imports: { env: Record<string, unknown> }) => {
        imports.env.microtick = () => env.nowMs();
        imports.env.get_rand_int = () => env.randomU32() | 0;
        const instance = await WebAssembly.instantiate(module, imports as WebAssembly.Imports);
        return instance.exports;
      },
      memory_size: config.memoryMiB * 1024 * 1024,
      vga_memory_size: 2 * 1024 * 1024,
      autostart: false,
      disable_keyboard: true,
      disable_mouse: true,
      disable_speaker: true,
      disable_jit: options.jit === false,
      acpi: false,
      fastboot: true,
      net_device: { type: config.nic ? "ne2k" : "none" },
      // a restored checkpoint keeps the NIC's MAC and memory (else v86 keeps the fresh ones)
      preserve_mac_from_state_image: true,
    };
    if (files.bios) settings.bios = { buffer: toArrayBuffer(files.bios) };
    if (files.vgaBios) settings.vga_bios = { buffer: toArrayBuffer(files.vgaBios) };
    if (files.multiboot) settings.multiboot = { buffer: toArrayBuffer(files.multiboot) };
    if (files.bzimage) settings.bzimage = { buffer: toArrayBuffer(files.bzimage) };
    if (files.initrd) settings.initrd = { buffer: toArrayBuffer(files.initrd) };
    // the CD: read-only, the same file on every node (its sha256 is in the config): reads need no log
    const cdrom = loaded.cdrom ? new ReadOnlyImage(loaded.cdrom.path) : undefined;
    if (cdrom) settings.cdrom = cdrom;
    // SeaBIOS's boot order, first device in the lowest nibble (1 floppy, 2 hard disk, 3 CD)
    if (config.kind === "bios") settings.boot_order = config.boot === "cdrom" ? 0x213 : 0x312;
    if (config.cmdline !== undefined) settings.cmdline = config.cmdline;
    if (disk) settings.hda = disk;

    // Construction reads Date (rtc.js) and Math.random (NIC MACs): give it the guest's.
    globals.enter();
    let emulator: V86;
    try {
      emulator = await new Promise<V86>((resolve, reject) => {
        let e: V86;
        try {
          e = new V86(settings as any);
        } catch (err) {
          reject(err);
          return;
        }
        e.add_listener("emulator-loaded", () => resolve(e));
      });
    } finally {
      globals.exit();
    }
    const internal = (emulator as unknown as { v86: V86Internal }).v86;
    // No self-scheduling: our driver calls main_loop.
    internal.yield = () => {};
    internal.cpu.stop_idling = () => {};
    if (config.nic) {
      // v86 draws the MAC at random: the config fixes it (the station address PROM holds each byte twice)
      const nic = internal.cpu.devices.net as Ne2k;
      const mac = macBytes(config.nic.mac);
      nic.mac.set(mac);
      mac.forEach((b, i) => (nic.memory[2 * i] = nic.memory[2 * i + 1] = b));
    }
    const jit = new DeferredJit(internal.cpu);
    return new V86Machine(emulator, internal, globals, jit, disk, () => env.nowMs(), cdrom);
  }

  /**
   * Swaps in this machine's guest globals, and points v86's namespace static `microtick` (read at
   * call time by pit.js, rtc.js and acpi.js) at this machine's clock. The static is shared by every
   * v86 instance in the process, so it is set whenever this machine's code is about to run: with two
   * machines in one process (tests, checkpoints), each must read its own clock.
   */
  private enterGuest(): void {
    this.globals.enter();
    this.internal.constructor.microtick = this.microtick;
  }

  private get bus(): { send(name: string, value: unknown): void } {
    return (this.emulator as unknown as { bus: { send(name: string, value: unknown): void } }).bus;
  }

  private get cpu(): V86Cpu {
    return this.internal.cpu;
  }

  /** 64-bit instruction count at the last slice boundary. */
  get icount(): number {
    return this.icount64;
  }

  /** The instruction count now, also while a slice runs (for the virtual clock). */
  liveIcount(): number {
    return this.icount64 + ((this.cpu.instruction_counter[0]! - this.lastCounter) >>> 0);
  }

  get memoryBytes(): number {
    return this.cpu.memory_size[0]!;
  }

  /** Runs one slice: one main_loop, about 100k instructions or up to a HLT. */
  runSlice(): SliceResult {
    if (this.destroyed) throw new Error("V86Machine.runSlice: machine destroyed");
    const before = this.icount64;
    this.jitClearedAtBoundary = false;
    this.enterGuest();
    let next: number;
    try {
      next = this.cpu.main_loop();
    } finally {
      this.globals.exit();
    }
    this.jit.publish();
    const counter = this.cpu.instruction_counter[0]!;
    this.icount64 += (counter - this.lastCounter) >>> 0;
    this.lastCounter = counter;
    let serial: Uint8Array | null = null;
    if (this.serialOut.length > 0) {
      serial = Uint8Array.from(this.serialOut);
      this.serialOut = [];
    }
    let net: Uint8Array[] | null = null;
    if (this.netOut.length > 0) {
      net = this.netOut;
      this.netOut = [];
    }
    return {
      icount: this.icount64,
      instructions: this.icount64 - before,
      net,
      halted: this.cpu.in_hlt[0] === 1,
      nextDeadlineMs: next,
      serial,
      diskRequests: this.disk?.hasIssued ? this.disk.takeIssued() : noRequests,
    };
  }

  /** Delivers bytes to COM1's receiver. Between slices only. */
  sendSerial(bytes: Uint8Array): void {
    for (const b of bytes) this.bus.send("serial0-input", b);
  }

  /** The machine has a network card. */
  get hasNic(): boolean {
    return this.cpu.devices.net !== undefined;
  }

  /**
   * Whether the NIC's receive ring has room for a frame of `bytes` now (v86's ne2k drops a frame
   * that does not fit, as the real chip does). Also true when the NIC is stopped or absent: the frame
   * is then dropped on delivery, as a real card drops it. Between slices only.
   */
  netRoom(bytes: number): boolean {
    const nic = this.cpu.devices.net as Ne2k | undefined;
    if (!nic || nic.cr & 1) return true;
    const pages = 1 + ((Math.max(60, bytes) + 4) >> 8);
    const free = nic.boundary > nic.curpg ? nic.boundary - nic.curpg : nic.pstop - nic.curpg + nic.boundary - nic.pstart;
    // one page spare: the write pointer never catches up with the read pointer
    return free > pages;
  }

  /**
   * The NIC's receive ring is empty: the guest has read every frame it was given (its next read
   * page, one past the boundary register, is where the NIC would write next). True when the NIC is
   * stopped or absent. Between slices only.
   */
  netRingEmpty(): boolean {
    const nic = this.cpu.devices.net as Ne2k | undefined;
    if (!nic || nic.cr & 1) return true;
    const next = nic.boundary + 1 >= nic.pstop ? nic.pstart : nic.boundary + 1;
    return next === nic.curpg;
  }

  /** Delivers an Ethernet frame to the NIC. Between slices only. */
  sendNet(frame: Uint8Array): void {
    this.bus.send("net0-receive", frame);
  }

  /** The CPU's registers (between slices; reading changes nothing). */
  registers(): Registers {
    return readRegisters(this.cpu as unknown as CpuViews);
  }

  /** Where the interrupt descriptor table is (linear base, limit in bytes less one). */
  interruptTable(): { base: number; limit: number } {
    const cpu = this.cpu as unknown as { idtr_offset: Int32Array; idtr_size: Int32Array };
    return { base: cpu.idtr_offset[0]! >>> 0, limit: cpu.idtr_size[0]! >>> 0 };
  }

  /** Guest memory at a linear address, by a read-only walk of the guest's page tables; throws ADDRESS_UNMAPPED. */
  readLinear(address: number, length: number): Uint8Array {
    return readLinear(this.cpu as unknown as CpuViews, address, length);
  }

  /** The screen's pixels in a VBE graphics mode, else undefined (between slices; reading changes nothing). */
  graphicsScreen(): GraphicsScreen | undefined {
    return readGraphicsScreen(this.cpu.devices.vga);
  }

  /** The VGA text screen (between slices; reading it changes nothing). */
  textScreen(): TextScreen {
    return readTextScreen(this.cpu.devices.vga);
  }

  /** Delivers PS/2 scancodes to the keyboard. Between slices only. */
  sendKeys(scancodes: Uint8Array): void {
    for (const code of scancodes) this.bus.send("keyboard-code", code);
  }

  /**
   * Captures the machine at this boundary, which must be one where the JIT cache was just cleared
   * (`clearJit`, applied from the logged checkpoint entry). Throws CheckpointBusyError if a disk
   * request is in flight (its completion callback lives inside v86 and cannot be carried over):
   * take it at a later boundary. `forProbe`: any boundary will do, for a debugger's probe machine
   * (it has no JIT and never goes on with the recorded timeline).
   */
  captureCheckpoint(options: { forProbe?: boolean } = {}): MachineCheckpoint {
    if (this.disk && this.disk.inFlight > 0) throw new CheckpointBusyError(`${this.disk.inFlight} disk request(s) in flight`);
    if (this.jit.pendingCount > 0) throw new Error("captureCheckpoint: JIT results not published (not at a boundary)");
    const cpu = this.cpu;
    if (!this.jitClearedAtBoundary && !options.forProbe) throw new Error("captureCheckpoint: clear the JIT at this boundary first (the logged checkpoint entry)");
    this.enterGuest();
    let devices: ArrayBuffer;
    try {
      devices = this.internal.save_state();
    } finally {
      this.globals.exit();
    }
    const ps2 = cpu.devices.ps2;
    const drain = (q: { length: number; shift(): number; push(b: number): void }) => {
      const out: number[] = [];
      for (let n = q.length; n > 0; n--) {
        const b = q.shift();
        out.push(b);
        q.push(b);
      }
      return out;
    };
    return {
      icount: this.icount64,
      counter: this.lastCounter,
      devices: new Uint8Array(devices),
      memory: new Uint8Array(cpu.wasm_memory.buffer).slice(),
      hidden: {
        kbd: drain(ps2.kbd_buffer),
        mouse: drain(ps2.mouse_buffer),
        ps2: { nextByteIsReady: ps2.next_byte_is_ready, nextByteIsAux: ps2.next_byte_is_aux, wheelMovement: ps2.wheel_movement, lastMousePacket: ps2.last_mouse_packet },
        uartInput: uarts(cpu).map((u) => [...u.input]),
        fwPointer: cpu.fw_pointer,
        ...(this.cdrom && !cpu.devices.cdrom?.buffer ? { cdromEjected: true as const } : {}),
      },
      diskNextId: this.disk ? this.disk.nextRequestId : null,
    };
  }

  /** Clears the JIT cache (at a logged checkpoint boundary). Between slices only. */
  clearJit(): void {
    this.cpu.jit_clear_cache();
    this.jit.modules.clear();
    this.jitClearedAtBoundary = true;
  }

  /**
   * Makes this (freshly created, never run) machine the checkpointed one. `probe`: a debugger's
   * probe machine, restored again and again: its wasm memory may have grown past the checkpoint's
   * (v86 allocates as it runs); the rest is cleared.
   */
  restoreCheckpoint(c: MachineCheckpoint, options: { probe?: boolean } = {}): void {
    if (this.destroyed) throw new Error("restoreCheckpoint: machine destroyed");
    const cpu = this.cpu;
    // v86's PCI restore reads `original_bar` of every BAR the saved config space marks as I/O, also
    // where the device has none: its IDE controller lists no BARs for a channel without a drive (a
    // machine with no hard disk), and the restore threw. A placeholder of size 0 there moves no
    // port; it is taken out again after.
    const holes: Array<{ bars: unknown[]; index: number }> = [];
    for (const device of (cpu.devices.pci as { devices: Array<{ pci_bars?: unknown[] } | undefined> }).devices) {
      const bars = device?.pci_bars;
      for (let index = 0; bars && index < bars.length; index++) {
        if (bars[index] !== undefined) continue;
        bars[index] = { size: 0, original_bar: 0, entries: [] };
        holes.push({ bars, index });
      }
    }
    this.enterGuest();
    try {
      this.internal.restore_state(c.devices.slice().buffer);
    } finally {
      this.globals.exit();
      for (const h of holes) h.bars[h.index] = undefined;
    }
    const memory = cpu.wasm_memory;
    if (memory.buffer.byteLength < c.memory.byteLength) memory.grow((c.memory.byteLength - memory.buffer.byteLength) / 65536);
    if (memory.buffer.byteLength !== c.memory.byteLength && !(options.probe && memory.buffer.byteLength > c.memory.byteLength)) {
      throw new CheckpointMismatchError(`wasm memory is ${memory.buffer.byteLength} bytes here, ${c.memory.byteLength} in the checkpoint`);
    }
    new Uint8Array(memory.buffer).set(c.memory);
    new Uint8Array(memory.buffer, c.memory.byteLength).fill(0);
    // set_state replaced these views with plain arrays; point them back into wasm memory. Views
    // that follow the memory: it grows while the guest runs (v86's own allocations), and a typed
    // array over the old buffer would be detached by then (save_state then threw).
    cpu.last_result = liveView(Int32Array, memory, 112, 1);
    cpu.mxcsr = liveView(Int32Array, memory, 824, 1);
    cpu.fpu_status_word = liveView(Uint16Array, memory, 1040, 1);
    // the JIT's own state came with wasm memory (an empty cache); drop any function the table holds
    cpu.jit_clear_all_funcs();
    this.jit.modules.clear();
    const ps2 = cpu.devices.ps2;
    ps2.kbd_buffer.clear();
    for (const b of c.hidden.kbd) ps2.kbd_buffer.push(b);
    ps2.mouse_buffer.clear();
    for (const b of c.hidden.mouse) ps2.mouse_buffer.push(b);
    ps2.next_byte_is_ready = c.hidden.ps2.nextByteIsReady;
    ps2.next_byte_is_aux = c.hidden.ps2.nextByteIsAux;
    ps2.wheel_movement = c.hidden.ps2.wheelMovement;
    ps2.last_mouse_packet = c.hidden.ps2.lastMousePacket;
    uarts(cpu).forEach((u, i) => (u.input = [...(c.hidden.uartInput[i] ?? [])]));
    cpu.fw_pointer = c.hidden.fwPointer;
    // v86's drive keeps the medium it was built with when the saved state has none
    if (c.hidden.cdromEjected && cpu.devices.cdrom) cpu.devices.cdrom.buffer = null;
    this.icount64 = c.icount;
    this.lastCounter = c.counter;
    if (this.disk && c.diskNextId !== null) this.disk.nextRequestId = c.diskNextId;
  }

  /**
   * For a debugger's probe (a machine without a JIT that never goes on with a recorded timeline):
   * its CPU's internals for the InstructionStepper, and a way to run guest code.
   */
  probeAccess(): ProbeAccess {
    return {
      cpu: this.cpu as unknown as StepperCpu,
      run: <T>(f: () => T): T => {
        this.enterGuest();
        try {
          return f();
        } finally {
          this.globals.exit();
        }
      },
      onHalt: (f) => (this.emulator as unknown as { add_listener(event: string, f: () => void): void }).add_listener("cpu-event-halt", f),
    };
  }

  /** A hash of guest RAM alone (the CPU's registers are compared as `registers()`). */
  ramDigest(): string {
    const cpu = this.cpu;
    return ramDigest(cpu.mem8.subarray(0, cpu.memory_size[0]));
  }

  /**
   * Digest of RAM and CPU state; equal digests mean equal machines (for lockstep purposes).
   * `ignorePreviousIp`: to compare a machine stepped in the interpreter with one that ran compiled
   * code (see state-digest.ts).
   */
  digest(options: { ignorePreviousIp?: boolean } = {}): string {
    const cpu = this.cpu;
    return stateDigest({ wasmMemory: cpu.wasm_memory, ram: cpu.mem8.subarray(0, cpu.memory_size[0]) }, options);
  }

  /** Flips one byte of guest RAM: a test hook for divergence detection. */
  perturbRam(offset: number): void {
    this.cpu.mem8[offset] = this.cpu.mem8[offset]! ^ 0xff;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emulator.destroy();
    this.cdrom?.close();
  }
}
