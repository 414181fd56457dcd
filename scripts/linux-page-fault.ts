/**
 * The bundled linux kernel keeps no symbols (tinyconfig: no kallsyms, no System.map committed), but
 * one C function is easy to find in a running machine: the IDT's page-fault gate leads to the entry
 * stub, which pushes its C handler's address before jumping to the common exception code (Linux 6.1,
 * i386: `pushl $exc_page_fault`). The debugger's test and benchmark break there.
 */
import { decode } from "../emulator/x86-decode.js";
import type { ReplayDebugger } from "../hypervisor/replay-debugger.js";

/** The linear address of `exc_page_fault` in the machine the debugger shows, if its entry stub is as expected. */
export function linuxPageFaultHandler(d: ReplayDebugger): number | undefined {
  const gate = d.readMemory(d.interruptTable().base + 14 * 8, 8);
  let pc = (gate[0]! | (gate[1]! << 8) | (gate[6]! << 16) | (gate[7]! << 24)) >>> 0;
  for (let i = 0; i < 6; i++) {
    const bytes = d.readMemory(pc, 16);
    const ins = decode((k) => bytes[k]!, true, pc);
    if (ins.opcode === 0x68 && ins.length === 5) return Buffer.from(bytes).readUInt32LE(1);
    pc += ins.length;
  }
  return undefined;
}
