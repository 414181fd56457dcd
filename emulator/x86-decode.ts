/**
 * Just enough of an x86 (16- and 32-bit) instruction decoder for a debugger that stops a machine by
 * planting a trap byte where the next instruction starts: an instruction's length, and where control
 * may go after it (the fall-through, a relative or indirect target, a return address, a far or
 * system transfer). Written from the Intel SDM's opcode maps; nothing here executes anything.
 *
 * Only the bytes are decoded here; what an indirect target reads (registers, the stack, descriptor
 * tables) is supplied by the caller through `Operands`, so this module knows nothing of v86.
 */

/** Opcode bytes 00–FF of the one-byte map that take a ModRM byte (bit set). */
const modrm1 = bitset([
  [0x00, 0x03], [0x08, 0x0b], [0x10, 0x13], [0x18, 0x1b], [0x20, 0x23], [0x28, 0x2b], [0x30, 0x33], [0x38, 0x3b],
  [0x62, 0x63], [0x69, 0x69], [0x6b, 0x6b], [0x80, 0x8f], [0xc0, 0xc1], [0xc4, 0xc7], [0xd0, 0xd3], [0xd8, 0xdf], [0xf6, 0xf7], [0xfe, 0xff],
]);
/** Two-byte map (0F xx) opcodes without a ModRM byte; the rest have one. */
const noModrm2 = bitset([[0x05, 0x09], [0x0b, 0x0b], [0x0e, 0x0e], [0x30, 0x37], [0x77, 0x77], [0x80, 0x8f], [0xa0, 0xa2], [0xa8, 0xaa], [0xc8, 0xcf]]);
/** Two-byte opcodes with an 8-bit immediate after their ModRM. */
const imm8Map2 = bitset([[0x70, 0x73], [0xa4, 0xa4], [0xac, 0xac], [0xba, 0xba], [0xc2, 0xc2], [0xc4, 0xc6]]);

function bitset(ranges: Array<[number, number]>): Uint8Array {
  const s = new Uint8Array(256);
  for (const [a, b] of ranges) for (let i = a; i <= b; i++) s[i] = 1;
  return s;
}

/** Segment override prefixes and the segment each names (v86's order: ES CS SS DS FS GS). */
const segmentPrefixes = new Map([[0x26, 0], [0x2e, 1], [0x36, 2], [0x3e, 3], [0x64, 4], [0x65, 5]]);

/** How control may leave an instruction. */
export type Flow =
  /** on to the next instruction only */
  | { kind: "next" }
  /** a relative jump or call (taken or, for a condition, `conditional`) */
  | { kind: "relative"; target: number; conditional: boolean; call: boolean }
  /** near jump or call through a register or memory (FF /2, /4) */
  | { kind: "indirect"; modrm: ModRm; call: boolean }
  /** near return: the target is on the stack */
  | { kind: "return" }
  /** far jump/call with the pointer in the instruction (EA, 9A) */
  | { kind: "far-direct"; selector: number; offset: number }
  /** far return, iret, far jump/call through memory, software interrupts, sysenter/sysexit: the caller decides */
  | { kind: "far" | "iret" | "interrupt" | "sysenter" | "sysexit" | "halt" }
  /** a string instruction with a REP prefix: it may run again at the same address */
  | { kind: "repeat" };

export interface ModRm {
  mod: number;
  reg: number;
  rm: number;
  /** SIB byte (32-bit addressing with rm = 4), else undefined */
  sib?: number;
  disp: number;
  address32: boolean;
  /** a segment override prefix (0 ES … 5 GS), else undefined */
  segment?: number;
}

export interface Decoded {
  length: number;
  flow: Flow;
  /** The first byte after the prefixes. */
  opcode: number;
  operand32: boolean;
  address32: boolean;
  /** A segment override prefix (0 ES … 5 GS), else undefined. */
  segment?: number;
  /** The last REP prefix was F2 (REPNZ), not F3. */
  repnz: boolean;
  /** The ModRM operand, when the instruction has one. */
  modrm?: ModRm;
}

/** Bytes of an instruction are read through this (a read may throw for an unmapped address). */
export type ReadByte = (offset: number) => number;

/**
 * Decodes the instruction whose first byte `read(0)` is. `code32`: the code segment's default size
 * (CS.D). `eipNext`-relative targets are offsets in CS: `eip` is the instruction's offset in CS.
 */
export function decode(read: ReadByte, code32: boolean, eip: number): Decoded {
  let at = 0;
  let operand32 = code32;
  let address32 = code32;
  let rep = false;
  let repnz = false;
  let segment: number | undefined;
  for (;;) {
    const b = read(at);
    if (b === 0x66) operand32 = !code32;
    else if (b === 0x67) address32 = !code32;
    else if (b === 0xf2 || b === 0xf3) {
      rep = true;
      repnz = b === 0xf2;
    }
    else if (b === 0xf0) {
      /* lock */
    } else if (segmentPrefixes.has(b)) segment = segmentPrefixes.get(b);
    else break;
    if (++at >= 15) throw new Error("more than 14 prefixes");
  }
  const z = operand32 ? 4 : 2; // an immediate of the operand size
  const op = read(at++);
  let imm = 0;
  let hasModrm: boolean;
  let twoByte = -1;
  if (op === 0x0f) {
    twoByte = read(at++);
    if (twoByte === 0x38 || twoByte === 0x3a) {
      at++; // the third opcode byte
      hasModrm = true;
      if (twoByte === 0x3a) imm = 1;
    } else {
      hasModrm = !noModrm2[twoByte];
      if (imm8Map2[twoByte]) imm = 1;
      if (twoByte === 0x0f) imm = 1; // 3DNow!: its opcode is an immediate byte
      if (twoByte >= 0x80 && twoByte <= 0x8f) imm = z;
    }
  } else {
    hasModrm = modrm1[op] === 1;
    if ((op < 0x40 && (op & 7) === 4) || op === 0x6a || op === 0x6b || (op >= 0x70 && op <= 0x7f) || op === 0x80 || op === 0x82 || op === 0x83) imm = 1;
    else if ((op < 0x40 && (op & 7) === 5) || op === 0x68 || op === 0x69 || op === 0x81 || op === 0xa9 || op === 0xc7 || op === 0xe8 || op === 0xe9) imm = z;
    else if (op === 0xa8 || (op >= 0xb0 && op <= 0xb7) || op === 0xc0 || op === 0xc1 || op === 0xc6 || op === 0xcd || op === 0xd4 || op === 0xd5 || (op >= 0xe0 && op <= 0xe7) || op === 0xeb) imm = 1;
    else if (op >= 0xb8 && op <= 0xbf) imm = z;
    else if (op === 0xc2 || op === 0xca) imm = 2;
    else if (op === 0xc8) imm = 3;
    else if (op === 0x9a || op === 0xea) imm = z + 2;
    else if (op >= 0xa0 && op <= 0xa3) imm = address32 ? 4 : 2;
  }
  let modrm: ModRm | undefined;
  if (hasModrm) {
    const m = read(at++);
    const mod = m >> 6;
    const reg = (m >> 3) & 7;
    const rm = m & 7;
    let sib: number | undefined;
    let dispBytes = 0;
    if (mod !== 3) {
      if (address32) {
        if (rm === 4) sib = read(at++);
        if (mod === 1) dispBytes = 1;
        else if (mod === 2 || (mod === 0 && (rm === 5 || (sib !== undefined && (sib & 7) === 5)))) dispBytes = 4;
      } else if (mod === 1) dispBytes = 1;
      else if (mod === 2 || (mod === 0 && rm === 6)) dispBytes = 2;
    }
    const disp = readSigned(read, at, dispBytes);
    at += dispBytes;
    modrm = { mod, reg, rm, ...(sib !== undefined ? { sib } : {}), disp, address32, ...(segment !== undefined ? { segment } : {}) };
    // F6 /0 /1 (test r/m8, imm8) and F7 /0 /1 (test r/m, imm)
    if (twoByte < 0 && (op === 0xf6 || op === 0xf7) && reg < 2) imm = op === 0xf6 ? 1 : z;
  }
  const immAt = at;
  const length = at + imm;
  if (length > 15) throw new Error("an instruction longer than 15 bytes");
  const wrap = (x: number) => (operand32 ? x >>> 0 : x & 0xffff);
  const next = eip + length;
  let flow: Flow = { kind: "next" };
  if (twoByte >= 0) {
    if (twoByte >= 0x80 && twoByte <= 0x8f) flow = { kind: "relative", target: wrap(next + readSigned(read, immAt, z)), conditional: true, call: false };
    else if (twoByte === 0x34) flow = { kind: "sysenter" };
    else if (twoByte === 0x35) flow = { kind: "sysexit" };
    else if (twoByte === 0x05 || twoByte === 0x07) flow = { kind: "far" }; // syscall/sysret (not in 32-bit v86 guests)
    else if (twoByte === 0x0b) flow = { kind: "interrupt" }; // ud2
  } else if ((op >= 0x70 && op <= 0x7f) || (op >= 0xe0 && op <= 0xe3)) {
    flow = { kind: "relative", target: wrap(next + readSigned(read, immAt, 1)), conditional: true, call: false };
  } else if (op === 0xeb) flow = { kind: "relative", target: wrap(next + readSigned(read, immAt, 1)), conditional: false, call: false };
  else if (op === 0xe9 || op === 0xe8) flow = { kind: "relative", target: wrap(next + readSigned(read, immAt, z)), conditional: false, call: op === 0xe8 };
  else if (op === 0xc3 || op === 0xc2) flow = { kind: "return" };
  else if (op === 0xca || op === 0xcb) flow = { kind: "far" };
  else if (op === 0xcf) flow = { kind: "iret" };
  else if (op === 0xcc || op === 0xcd || op === 0xce || op === 0xf1) flow = { kind: "interrupt" };
  else if (op === 0xf4) flow = { kind: "halt" };
  else if (op === 0x9a || op === 0xea) flow = { kind: "far-direct", offset: readUnsigned(read, immAt, z), selector: readUnsigned(read, immAt + z, 2) };
  else if (op === 0xff && modrm && (modrm.reg === 2 || modrm.reg === 4)) flow = { kind: "indirect", modrm, call: modrm.reg === 2 };
  else if (op === 0xff && modrm && (modrm.reg === 3 || modrm.reg === 5)) flow = { kind: "far" };
  else if (rep && ((op >= 0xa4 && op <= 0xa7) || (op >= 0xaa && op <= 0xaf) || (op >= 0x6c && op <= 0x6f))) flow = { kind: "repeat" };
  return { length, flow, opcode: op, operand32, address32, repnz, ...(segment !== undefined ? { segment } : {}), ...(modrm ? { modrm } : {}) };
}

function readUnsigned(read: ReadByte, at: number, bytes: number): number {
  let v = 0;
  for (let i = bytes - 1; i >= 0; i--) v = v * 256 + read(at + i);
  return v;
}

function readSigned(read: ReadByte, at: number, bytes: number): number {
  if (bytes === 0) return 0;
  const v = readUnsigned(read, at, bytes);
  const half = 2 ** (bytes * 8 - 1);
  return v >= half ? v - 2 * half : v;
}

/** Registers in v86's order (EAX ECX EDX EBX ESP EBP ESI EDI), for effective addresses. */
export type Gpr = ArrayLike<number>;

/** The offset (in its segment) a ModRM memory operand names, and the default segment (2 SS, 3 DS). */
export function effectiveAddress(m: ModRm, r: Gpr): { offset: number; segment: number } {
  if (m.address32) {
    let base = 0;
    let segment = 3;
    let index = 0;
    if (m.sib !== undefined) {
      const scale = m.sib >> 6;
      const i = (m.sib >> 3) & 7;
      const b = m.sib & 7;
      if (i !== 4) index = (r[i]! >>> 0) * (1 << scale);
      if (b === 5 && m.mod === 0) base = 0;
      else {
        base = r[b]! >>> 0;
        if (b === 4 || b === 5) segment = 2;
      }
    } else if (!(m.mod === 0 && m.rm === 5)) {
      base = r[m.rm]! >>> 0;
      if (m.rm === 5) segment = 2;
    }
    return { offset: (base + index + m.disp) >>> 0, segment: m.segment ?? segment };
  }
  const w = (i: number) => r[i]! & 0xffff;
  const [bx, bp, si, di] = [w(3), w(5), w(6), w(7)];
  const forms = [bx + si, bx + di, bp + si, bp + di, si, di, bp, bx];
  const base = m.mod === 0 && m.rm === 6 ? 0 : forms[m.rm]!;
  const segment = m.rm === 2 || m.rm === 3 || (m.rm === 6 && m.mod !== 0) ? 2 : 3;
  return { offset: (base + m.disp) & 0xffff, segment: m.segment ?? segment };
}
