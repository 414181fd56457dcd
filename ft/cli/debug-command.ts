/**
 * `lockstep debug FILE --gdb [HOST:]PORT`: serves gdb on a replay of the recording (see
 * gdb-server.ts and hypervisor/replay-debugger.ts).
 *
 * `lockstep debug FILE --at SLICE`: replays a recording in this process to a slice boundary and
 * prints the machine there — its registers and, with `--memory ADDR[:LEN]`, guest memory at virtual
 * addresses (translated by a read-only walk of the guest's page tables). Looking changes nothing:
 * the replay verifies every entry and digest up to that boundary as `lockstep replay` does.
 *
 * Errors: a recording of another machine (LOG_MISMATCH), a boundary past the end of the recording
 * (PAST_END), an address the guest's page tables do not map (ADDRESS_UNMAPPED).
 */
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { loadMachine } from "../../emulator/machine-config.js";
import type { Registers } from "../../emulator/machine-view.js";
import { LogReader } from "../../hypervisor/log-file.js";
import { checkHeader, imageForHeader } from "../../hypervisor/log-header.js";
import { MachineSession } from "../../hypervisor/machine-session.js";
import { ReplayDebugger } from "../../hypervisor/replay-debugger.js";
import { Replayer } from "../../hypervisor/replayer.js";
import { componentLogger } from "../logger.js";
import { serveGdb } from "./gdb-server.js";

export interface DebugOptions {
  file: string;
  /** The slice boundary to stop at (slices completed). */
  at: number;
  /** Memory ranges to show: `ADDR[:LEN]` (hex with 0x, or decimal; LEN default 64). */
  memory: string[];
  image?: string;
  json: boolean;
}

/** Bytes of one memory range at most. */
const rangeBytesMax = 1 << 20;

export function parseRange(spec: string): { address: number; length: number } {
  const m = /^(0x[0-9a-f]+|\d+)(?::(0x[0-9a-f]+|\d+))?$/i.exec(spec.trim());
  const address = m ? Number(m[1]) : NaN;
  const length = m?.[2] !== undefined ? Number(m[2]) : 64;
  if (!m || address > 0xffffffff || length < 1 || length > rangeBytesMax) {
    throw new LockstepError(ErrorCode.usage, `--memory ${JSON.stringify(spec)} is not ADDR[:LEN]`, `an address below 4 GiB (0x... or decimal) and a length from 1 to ${rangeBytesMax}`);
  }
  return { address, length };
}

export interface DebugReport {
  slice: number;
  instructions: number;
  registers: Registers;
  memory: Array<{ address: number; bytes: string }>;
}

/** Replays to `at` and reads the machine there. */
export async function debugAt(options: Omit<DebugOptions, "json">): Promise<DebugReport> {
  const ranges = options.memory.map(parseRange);
  const reader = new LogReader(options.file);
  let session: MachineSession | undefined;
  try {
    const header = reader.header;
    const loaded = loadMachine(imageForHeader(header, options.image, "The recording's machine"), { memoryMiB: header.machine.memoryMiB });
    checkHeader(header, loaded);
    session = await MachineSession.open({ loaded, ...(header.disk ? { diskBytes: header.disk.bytes } : {}), clock: header.clock, ...(header.jit === false ? { jit: false } : {}) });
    const replayer = new Replayer(session.driver, () => reader.next(), { untilSlice: options.at });
    const end = replayer.run().end;
    const slice = session.driver.slice;
    if (end !== "until") {
      throw new LockstepError(ErrorCode.pastEnd, `The recording ends at slice ${slice} (${end}): slice ${options.at} is past its end`, `give --at ${slice} or less`, { end: slice });
    }
    const machine = session.machine;
    return {
      slice,
      instructions: session.driver.icount,
      registers: machine.registers(),
      memory: ranges.map((r) => ({ address: r.address, bytes: Buffer.from(machine.readLinear(r.address, r.length)).toString("hex") })),
    };
  } finally {
    session?.close();
    reader.close();
  }
}

const hex8 = (n: number) => `0x${(n >>> 0).toString(16).padStart(8, "0")}`;

/** Registers as gdb's `info registers` lays them out, and memory as a hex dump. */
export function formatReport(r: DebugReport): string {
  const g = r.registers;
  const lines = [`slice ${r.slice} (instruction ${r.instructions}), CPL ${g.cpl}, ${g.mode === "real" ? "real mode" : g.mode === "protected" ? "protected mode, no paging" : g.mode === "pae" ? "PAE paging" : "paging"}`];
  for (const name of ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags"] as const) lines.push(`${name.padEnd(8)}${hex8(g[name])}`);
  for (const name of ["cs", "ss", "ds", "es", "fs", "gs"] as const) lines.push(`${name.padEnd(8)}0x${g[name].toString(16).padStart(4, "0")}`);
  for (const name of ["cr0", "cr2", "cr3", "cr4"] as const) lines.push(`${name.padEnd(8)}${hex8(g[name])}`);
  for (const m of r.memory) {
    const bytes = Buffer.from(m.bytes, "hex");
    for (let o = 0; o < bytes.length; o += 16) {
      const row = bytes.subarray(o, o + 16);
      const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
      const text = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : ".")).join("");
      lines.push(`${hex8(m.address + o)}:  ${hex.padEnd(48)} ${text}`);
    }
  }
  return lines.join("\n") + "\n";
}

export async function debugCommand(options: DebugOptions): Promise<void> {
  const report = await debugAt(options);
  process.stdout.write(options.json ? JSON.stringify(report) + "\n" : formatReport(report));
}

/** `[host:]port`: a port alone listens on loopback. */
export function parseListen(spec: string): { host: string; port: number } {
  const m = /^(?:(\[[^\]]+\]|[^:]+):)?(\d+)$/.exec(spec.trim());
  const port = m ? Number(m[2]) : NaN;
  if (!m || port > 65535) throw new LockstepError(ErrorCode.usage, `--gdb ${JSON.stringify(spec)} is not [HOST:]PORT`, "e.g. --gdb 1234 or --gdb 127.0.0.1:1234");
  return { host: m[1]?.replace(/^\[|\]$/g, "") ?? "127.0.0.1", port };
}

export async function gdbCommand(options: { file: string; listen: string; at: number; image?: string }): Promise<void> {
  const { host, port } = parseListen(options.listen);
  const log = componentLogger("gdb");
  const d = await ReplayDebugger.open({ file: options.file, ...(options.image ? { image: options.image } : {}) });
  try {
    if (options.at > 0) await d.goto({ slice: options.at, instruction: 0 });
    const served = await serveGdb(d, host, port, log);
    const where = `${host.includes(":") ? `[${host}]` : host}:${served.port}`;
    log.info({ listen: where, file: options.file }, "serving gdb");
    process.stderr.write(`lockstep: gdb can attach: gdb -ex 'target remote ${where}'\n`);
    await served.done;
  } finally {
    d.close();
  }
}
