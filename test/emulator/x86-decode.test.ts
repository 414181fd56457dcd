// The debugger's instruction decoder against an independent disassembler: objdump (binutils) sweeps
// the bundled SeaBIOS and VGA BIOS images (32- and 16-bit code, tens of thousands of instructions,
// prefixes, every addressing form they use) and the tiny kernel; at every instruction objdump
// decodes, the length must agree, and so must the target of every relative jump, call and loop.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { bundledImagesDir } from "../../emulator/package-root.js";
import { decode, effectiveAddress } from "../../emulator/x86-decode.js";

interface Listed {
  at: number;
  length: number;
  text: string;
}

/** objdump's linear sweep of a raw binary: each instruction's offset, length (continuation lines joined) and text. */
function objdump(file: string, bits: 16 | 32): Listed[] {
  const out = execFileSync("objdump", ["-D", "-b", "binary", "-m", bits === 32 ? "i386" : "i8086", file], { maxBuffer: 1 << 30 }).toString();
  const listed: Listed[] = [];
  for (const line of out.split("\n")) {
    const m = /^\s*([0-9a-f]+):\t((?:[0-9a-f]{2} )+)\s*\t?(.*)$/.exec(line);
    if (!m) continue;
    const at = parseInt(m[1]!, 16);
    const n = m[2]!.trim().split(" ").length;
    const last = listed.at(-1);
    if (m[3]!.trim() === "" && last && last.at + last.length === at) last.length += n;
    else listed.push({ at, length: n, text: m[3]!.trim() });
  }
  return listed;
}

function compare(file: string, bits: 16 | 32) {
  const bytes = readFileSync(file);
  let lengths = 0;
  let targets = 0;
  const wrong: string[] = [];
  for (const i of objdump(file, bits)) {
    // what objdump could not decode, and prefixes it lists on their own (a run too long for one instruction)
    if (i.text.includes("(bad)") || i.text.startsWith(".byte") || /^((data16|data32|addr16|addr32|rep[nz]*|lock|[c-gs]s)\s*)+$/.test(i.text)) continue;
    // data that objdump reads as one instruction of 15 bytes or more (a CPU refuses those)
    if (i.length >= 15) continue;
    const d = decode((o) => bytes[i.at + o] ?? 0, bits === 32, i.at);
    if (d.length !== i.length) wrong.push(`0x${i.at.toString(16)} ${i.text}: length ${d.length}, objdump ${i.length}`);
    else lengths++;
    // "jmp 0x1234", "call 0x1234", "jne 0x1234", "loop 0x1234" (objdump's targets are offsets in the file)
    const t = /^(j[a-z]+|call[lw]?|loop[a-z]*)\s+0x([0-9a-f]+)$/.exec(i.text);
    if (t && d.flow.kind === "relative") {
      const expected = parseInt(t[2]!, 16);
      // a 16-bit target wraps at 64 KiB; objdump prints it within the file's offsets
      if ((d.flow.target & (bits === 16 ? 0xffff : 0xffffffff)) !== (expected & (bits === 16 ? 0xffff : 0xffffffff))) wrong.push(`0x${i.at.toString(16)} ${i.text}: target 0x${d.flow.target.toString(16)}`);
      else targets++;
    }
  }
  return { lengths, targets, wrong };
}

describe("x86 instruction decoder", () => {
  for (const [name, file, bits] of [
    ["SeaBIOS, 32-bit", join(bundledImagesDir(), "bios", "bios.bin"), 32],
    ["SeaBIOS, 16-bit", join(bundledImagesDir(), "bios", "bios.bin"), 16],
    ["VGA BIOS, 16-bit", join(bundledImagesDir(), "bios", "vgabios-stdvga.bin"), 16],
    ["the tiny kernel", join(bundledImagesDir(), "tiny", "tiny.bin"), 32],
  ] as const) {
    it(`agrees with objdump on every instruction of ${name}`, () => {
      const r = compare(file, bits);
      expect(r.wrong.slice(0, 20)).toEqual([]);
      expect(r.lengths).toBeGreaterThan(name.startsWith("the tiny") ? 500 : 10_000);
      expect(r.targets).toBeGreaterThan(name.startsWith("the tiny") ? 50 : 1000);
    });
  }

  it("classifies control transfers and computes effective addresses", () => {
    const at = (hex: string, code32 = true, eip = 0x1000) => decode((o) => Buffer.from(hex, "hex")[o] ?? 0, code32, eip);
    expect(at("c3").flow).toEqual({ kind: "return" });
    expect(at("cf").flow).toEqual({ kind: "iret" });
    expect(at("cd80").flow).toEqual({ kind: "interrupt" });
    expect(at("0f34").flow).toEqual({ kind: "sysenter" });
    expect(at("f3a5").flow).toEqual({ kind: "repeat" });
    expect(at("a5").flow).toEqual({ kind: "next" });
    expect(at("ea78563412 0800".replace(" ", "")).flow).toEqual({ kind: "far-direct", offset: 0x12345678, selector: 8 });
    // call *0x10(%ebx,%esi,4)
    const call = at("ff54b310");
    expect(call.length).toBe(4);
    if (call.flow.kind !== "indirect") throw new Error(call.flow.kind);
    expect(call.flow.call).toBe(true);
    const regs = [0, 0, 0, 0x2000, 0x8000, 0x9000, 3, 0];
    expect(effectiveAddress(call.flow.modrm, regs)).toEqual({ offset: 0x2000 + 12 + 0x10, segment: 3 });
    // jmp *%eax; jmp *-8(%ebp) (SS by default)
    const viaEbp = at("ff65f8");
    if (viaEbp.flow.kind !== "indirect") throw new Error(viaEbp.flow.kind);
    expect(effectiveAddress(viaEbp.flow.modrm, regs)).toEqual({ offset: 0x9000 - 8, segment: 2 });
    expect(at("ffe0").flow).toMatchObject({ kind: "indirect", modrm: { mod: 3, rm: 0 } });
    // 16-bit: jmp short back to itself wraps in the segment
    expect(at("ebfe", false, 0xfffe).flow).toMatchObject({ kind: "relative", target: 0xfffe });
  });
});
