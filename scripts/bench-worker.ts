/**
 * One benchmark measurement in a fresh process (v86's namespace clock is shared by every machine of
 * a JS realm, so stock and deterministic machines never share a process). Prints one JSON line:
 * { instructions, ms, mips }.
 *
 *   node dist/scripts/bench-worker.js <stock|deterministic> <linux-boot|tiny-busy|linux-loop>
 *
 * Both modes compile wasm with the tier LOCKSTEP_WASM_TIER names (see emulator/wasm-tier.ts).
 */
import { createRequire } from "node:module";
import { V86 } from "v86";
import { makeBlankDisk } from "../emulator/blank-disk.js";
import { loadMachine, type LoadedMachine } from "../emulator/machine-config.js";
import { configuredWasmTier, useWasmTier } from "../emulator/wasm-tier.js";
import { MemoryDiskPort } from "../hypervisor/disk/disk-port.js";
import { defaultClockParams, MachineSession } from "../hypervisor/machine-session.js";
import { Recorder } from "../hypervisor/recorder.js";

type Mode = "stock" | "deterministic";
type Workload = "linux-boot" | "tiny-busy" | "linux-loop";

interface Plan {
  image: string;
  /** Text that ends the boot phase. */
  ready: RegExp;
  /** Command typed after boot, and the text that ends it; none: measure the boot itself. */
  command?: string;
  done?: RegExp;
}

const plans: Record<Workload, Plan> = {
  "linux-boot": { image: "linux", ready: /lockstep:\/root# / },
  "tiny-busy": { image: "tiny", ready: /tiny> /, command: "busy 400\r", done: /busy ticks [0-9A-F]+ tsc [0-9A-F]+\r\n/ },
  "linux-loop": {
    image: "linux",
    ready: /lockstep:\/root# /,
    command: "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo lo''op-done\r",
    done: /loop-done\r\n/,
  },
};

const ab = (b: Uint8Array) => b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;

async function stock(loaded: LoadedMachine, plan: Plan): Promise<{ instructions: number; ms: number }> {
  const require = createRequire(import.meta.url);
  const f = loaded.files;
  const options: Record<string, unknown> = {
    wasm_path: require.resolve("v86/build/v86.wasm"),
    memory_size: loaded.config.memoryMiB << 20,
    vga_memory_size: 2 << 20,
    autostart: true,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
    acpi: false,
    fastboot: true,
    net_device: { type: "none" },
  };
  if (f.bios) options.bios = { buffer: ab(f.bios) };
  if (f.vgaBios) options.vga_bios = { buffer: ab(f.vgaBios) };
  if (f.multiboot) options.multiboot = { buffer: ab(f.multiboot) };
  if (f.bzimage) options.bzimage = { buffer: ab(f.bzimage) };
  if (f.initrd) options.initrd = { buffer: ab(f.initrd) };
  if (loaded.config.cmdline) options.cmdline = loaded.config.cmdline;
  if (loaded.config.disk) options.hda = { buffer: makeBlankDisk(loaded.config.disk).buffer };
  const started = performance.now();
  const e = new V86(options as never) as unknown as {
    add_listener(n: string, f: (v: number) => void): void;
    bus: { send(n: string, v: number): void };
    v86: { cpu: { instruction_counter: Uint32Array } };
    destroy(): void;
  };
  return new Promise((resolve) => {
    let out = "";
    let phase: "boot" | "command" = "boot";
    let t0 = started;
    let i0 = 0;
    let total = 0;
    let last = 0;
    // the u32 counter wraps every 4G instructions: extend it
    const count = () => {
      if (!e.v86) return total;
      const c = e.v86.cpu.instruction_counter[0]!;
      total += (c - last) >>> 0;
      last = c;
      return total;
    };
    const timer = setInterval(count, 20);
    e.add_listener("serial0-output-byte", (b) => {
      out += String.fromCharCode(b);
      if (phase === "boot" && plan.ready.test(out)) {
        if (!plan.command) {
          clearInterval(timer);
          const r = { instructions: count(), ms: performance.now() - started };
          e.destroy();
          resolve(r);
          return;
        }
        phase = "command";
        out = "";
        t0 = performance.now();
        i0 = count();
        for (const c of plan.command) e.bus.send("serial0-input", c.charCodeAt(0));
      } else if (phase === "command" && plan.done!.test(out)) {
        clearInterval(timer);
        const r = { instructions: count() - i0, ms: performance.now() - t0 };
        e.destroy();
        resolve(r);
      }
    });
  });
}

async function deterministic(loaded: LoadedMachine, plan: Plan): Promise<{ instructions: number; ms: number }> {
  const disk = loaded.config.disk ? makeBlankDisk(loaded.config.disk) : undefined;
  const started = performance.now();
  const s = await MachineSession.open({ loaded, ...(disk ? { diskBytes: disk.byteLength } : {}), clock: defaultClockParams(Date.now(), 1) });
  // the recorder's boundary work and the disk's bounce buffers are part of the deterministic path
  const recorder = new Recorder(s.driver, { digestEverySlices: 0, sink: () => {} });
  const port = disk ? new MemoryDiskPort(disk, recorder) : undefined;
  const decoder = new TextDecoder();
  let out = "";
  const runUntil = (re: RegExp) => {
    while (!re.test(out)) {
      recorder.boundary(undefined);
      const r = s.driver.runSlice();
      if (r.diskRequests.length > 0) port!.submit(r.diskRequests);
      if (r.serial) out += decoder.decode(r.serial);
    }
  };
  runUntil(plan.ready);
  if (!plan.command) {
    const r = { instructions: s.driver.icount, ms: performance.now() - started };
    s.close();
    return r;
  }
  out = "";
  const t0 = performance.now();
  const i0 = s.driver.icount;
  s.machine.sendSerial(new TextEncoder().encode(plan.command));
  runUntil(plan.done!);
  const r = { instructions: s.driver.icount - i0, ms: performance.now() - t0 };
  s.close();
  return r;
}

const [mode, workload] = process.argv.slice(2) as [Mode, Workload];
const plan = plans[workload];
if (!plan || (mode !== "stock" && mode !== "deterministic")) {
  process.stderr.write("usage: bench-worker <stock|deterministic> <linux-boot|tiny-busy|linux-loop>\n");
  process.exit(2);
}
useWasmTier(configuredWasmTier());
const loaded = loadMachine(plan.image);
const r = mode === "stock" ? await stock(loaded, plan) : await deterministic(loaded, plan);
process.stdout.write(JSON.stringify({ ...r, mips: r.instructions / r.ms / 1000 }) + "\n");
process.exit(0);
