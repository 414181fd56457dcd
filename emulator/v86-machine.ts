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
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { V86 } from "v86";
import { BounceDisk, type DiskRequest } from "./bounce-disk.js";
import { DeferredJit, type JitCpu } from "./deferred-jit.js";
import { GuestGlobals, type GuestEnvironment } from "./guest-environment.js";
import type { LoadedMachine } from "./machine-config.js";
import { loadHasher, stateDigest } from "./state-digest.js";

/** The parts of v86's internal CPU object lockstep uses (property names survive minification). */
interface V86Cpu extends JitCpu {
  main_loop(): number;
  in_hlt: Uint8Array;
  instruction_counter: Uint32Array;
  mem8: Uint8Array;
  memory_size: Uint32Array;
  stop_idling: () => void;
  devices: Record<string, any>;
}

interface V86Internal {
  cpu: V86Cpu;
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
}

const noRequests: DiskRequest[] = [];

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
  private destroyed = false;

  private constructor(
    private readonly emulator: V86,
    private readonly internal: V86Internal,
    private readonly globals: GuestGlobals,
    readonly jit: DeferredJit,
    readonly disk: BounceDisk | undefined,
  ) {
    emulator.add_listener("serial0-output-byte", (byte: number) => {
      this.serialOut.push(byte);
    });
    this.lastCounter = internal.cpu.instruction_counter[0]!;
  }

  static async create(options: MachineOptions): Promise<V86Machine> {
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
      net_device: { type: "none" },
    };
    if (files.bios) settings.bios = { buffer: toArrayBuffer(files.bios) };
    if (files.vgaBios) settings.vga_bios = { buffer: toArrayBuffer(files.vgaBios) };
    if (files.multiboot) settings.multiboot = { buffer: toArrayBuffer(files.multiboot) };
    if (files.bzimage) settings.bzimage = { buffer: toArrayBuffer(files.bzimage) };
    if (files.initrd) settings.initrd = { buffer: toArrayBuffer(files.initrd) };
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
    // v86's namespace static, read at call time by pit.js, rtc.js and acpi.js.
    internal.constructor.microtick = () => env.nowMs();
    // No self-scheduling: our driver calls main_loop.
    internal.yield = () => {};
    internal.cpu.stop_idling = () => {};
    const jit = new DeferredJit(internal.cpu);
    return new V86Machine(emulator, internal, globals, jit, disk);
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
    this.globals.enter();
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
    return {
      icount: this.icount64,
      instructions: this.icount64 - before,
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

  /** Delivers PS/2 scancodes to the keyboard. Between slices only. */
  sendKeys(scancodes: Uint8Array): void {
    for (const code of scancodes) this.bus.send("keyboard-code", code);
  }

  /** Digest of RAM and CPU state; equal digests mean equal machines (for lockstep purposes). */
  digest(): string {
    const cpu = this.cpu;
    return stateDigest({ wasmMemory: cpu.wasm_memory, ram: cpu.mem8.subarray(0, cpu.memory_size[0]) });
  }

  /** Flips one byte of guest RAM: a test hook for divergence detection. */
  perturbRam(offset: number): void {
    this.cpu.mem8[offset] = this.cpu.mem8[offset]! ^ 0xff;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.emulator.destroy();
  }
}
