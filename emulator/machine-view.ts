/**
 * A debugger's view of a stopped machine: its registers, read from v86's own views of wasm memory,
 * and guest memory at virtual addresses, translated by walking the guest's page tables read-only
 * (32-bit and PAE). v86's own translation is never used here: it sets accessed bits, fills its TLB
 * and injects a page fault for an unmapped address, all of which change the machine. Nothing here
 * writes anything.
 */
import { ErrorCode, LockstepError } from "./lockstep-error.js";

export interface Registers {
  eax: number;
  ecx: number;
  edx: number;
  ebx: number;
  esp: number;
  ebp: number;
  esi: number;
  edi: number;
  /** Offset in CS (what gdb calls eip). */
  eip: number;
  eflags: number;
  cs: number;
  ss: number;
  ds: number;
  es: number;
  fs: number;
  gs: number;
  cr0: number;
  cr2: number;
  cr3: number;
  cr4: number;
  /** Current privilege level (0: kernel). */
  cpl: number;
  /** How addresses translate: real mode, protected mode without paging, 32-bit or PAE paging. */
  mode: "real" | "protected" | "paging" | "pae";
}

/** The parts of v86's CPU read here (its typed views of wasm memory and one export). */
export interface CpuViews {
  reg32: Int32Array;
  instruction_pointer: Int32Array;
  cr: Int32Array;
  cpl: Uint8Array;
  sreg: Uint16Array;
  segment_offsets: Int32Array;
  mem8: Uint8Array;
  memory_size: Uint32Array;
  get_eflags(): number;
}

/** v86's segment register order. */
const [ES, CS, SS, DS, FS, GS] = [0, 1, 2, 3, 4, 5];

export function readRegisters(cpu: CpuViews): Registers {
  const r = cpu.reg32;
  const cr0 = cpu.cr[0]!;
  const cr4 = cpu.cr[4]!;
  const mode = !(cr0 & 1) ? "real" : !(cr0 >>> 31) ? "protected" : cr4 & 0x20 ? "pae" : "paging";
  return {
    eax: r[0]! >>> 0,
    ecx: r[1]! >>> 0,
    edx: r[2]! >>> 0,
    ebx: r[3]! >>> 0,
    esp: r[4]! >>> 0,
    ebp: r[5]! >>> 0,
    esi: r[6]! >>> 0,
    edi: r[7]! >>> 0,
    eip: (cpu.instruction_pointer[0]! - cpu.segment_offsets[CS]!) >>> 0,
    eflags: cpu.get_eflags() >>> 0,
    cs: cpu.sreg[CS]!,
    ss: cpu.sreg[SS]!,
    ds: cpu.sreg[DS]!,
    es: cpu.sreg[ES]!,
    fs: cpu.sreg[FS]!,
    gs: cpu.sreg[GS]!,
    cr0: cr0 >>> 0,
    cr2: cpu.cr[2]! >>> 0,
    cr3: cpu.cr[3]! >>> 0,
    cr4: cr4 >>> 0,
    cpl: cpu.cpl[0]!,
    mode,
  };
}

/**
 * Guest RAM as a plain typed array over the same bytes: v86's `mem8` is a proxy that follows the
 * memory as it grows, and indexing it costs a trap per byte (a debugger reads and writes thousands).
 * Valid until wasm memory grows (make a new one per operation).
 */
export function ramView(cpu: Pick<CpuViews, "mem8" | "memory_size">): Uint8Array {
  const m = cpu.mem8;
  return new Uint8Array(m.buffer, m.byteOffset, cpu.memory_size[0]!);
}

const unmapped = (linear: number, why: string) =>
  new LockstepError(ErrorCode.addressUnmapped, `Address 0x${(linear >>> 0).toString(16)} is not mapped: ${why}`, undefined, { address: linear >>> 0 });

/** The physical address of a linear one, by the guest's page tables (read-only); throws ADDRESS_UNMAPPED. */
export function translate(cpu: CpuViews, linear: number): number {
  linear >>>= 0;
  const cr0 = cpu.cr[0]!;
  const cr3 = cpu.cr[3]! >>> 0;
  const cr4 = cpu.cr[4]!;
  if (!(cr0 >>> 31)) return linear; // no paging
  const ram = ramView(cpu);
  const size = cpu.memory_size[0]!;
  const dword = (at: number, what: string): number => {
    if (at + 4 > size) throw unmapped(linear, `its ${what} at physical 0x${at.toString(16)} is outside RAM`);
    return (ram[at]! | (ram[at + 1]! << 8) | (ram[at + 2]! << 16) | (ram[at + 3]! << 24)) >>> 0;
  };
  if (cr4 & 0x20) {
    // PAE: 4 PDPTEs, then 512-entry directories and tables of 64-bit entries (the high half, above 4 GiB, must be 0 here)
    const pdpte = dword(((cr3 & ~0x1f) >>> 0) + ((linear >>> 30) & 3) * 8, "PDPT entry");
    if (!(pdpte & 1)) throw unmapped(linear, "PDPT entry not present");
    const pdeAt = ((pdpte & ~0xfff) >>> 0) + ((linear >>> 21) & 0x1ff) * 8;
    const pde = dword(pdeAt, "page directory entry");
    if (!(pde & 1)) throw unmapped(linear, "page directory entry not present");
    if (pde & 0x80) return (((pde & 0xffe00000) >>> 0) + (linear & 0x1fffff)) >>> 0;
    const pte = dword(((pde & ~0xfff) >>> 0) + ((linear >>> 12) & 0x1ff) * 8, "page table entry");
    if (!(pte & 1)) throw unmapped(linear, "page table entry not present");
    return (((pte & ~0xfff) >>> 0) + (linear & 0xfff)) >>> 0;
  }
  const pde = dword(((cr3 & ~0xfff) >>> 0) + (linear >>> 22) * 4, "page directory entry");
  if (!(pde & 1)) throw unmapped(linear, "page directory entry not present");
  if (pde & 0x80 && cr4 & 0x10) return (((pde & 0xffc00000) >>> 0) + (linear & 0x3fffff)) >>> 0; // a 4 MiB page (PSE)
  const pte = dword(((pde & ~0xfff) >>> 0) + ((linear >>> 12) & 0x3ff) * 4, "page table entry");
  if (!(pte & 1)) throw unmapped(linear, "page table entry not present");
  return (((pte & ~0xfff) >>> 0) + (linear & 0xfff)) >>> 0;
}

/** `length` bytes of guest memory from a linear address (page by page); throws ADDRESS_UNMAPPED. */
export function readLinear(cpu: CpuViews, linear: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let done = 0; done < length; ) {
    const at = (linear + done) >>> 0;
    const inPage = Math.min(length - done, 4096 - (at & 0xfff));
    const phys = translate(cpu, at);
    if (phys + inPage > cpu.memory_size[0]!) throw unmapped(at, `physical 0x${phys.toString(16)} is outside RAM (${cpu.memory_size[0]} bytes)`);
    out.set(ramView(cpu).subarray(phys, phys + inPage), done);
    done += inPage;
  }
  return out;
}
