/**
 * State digest: a fast non-cryptographic hash (xxh64, from the xxhash-wasm package) of guest RAM
 * and of the CPU state kept in wasm memory, cheap enough to compare often. Two byte ranges of the
 * CPU state are skipped because they are caches or are written as a side effect of reading the TSC,
 * not architectural state.
 */
import xxhash from "xxhash-wasm";

type Hasher = Awaited<ReturnType<typeof xxhash>>;
let hasher: Hasher | undefined;

export async function loadHasher(): Promise<void> {
  hasher ??= await xxhash();
}

/** wasm byte ranges of CPU state: [64, 1300) minus the eip caches and current_tsc. */
const chunkBytes = 1 << 20;
const cpuStateStart = 64;
const cpuStateEnd = 1300;
const skippedRanges: Array<[number, number]> = [
  [620, 628], // last_virt_eip, eip_phys: translation caches
  [960, 968], // current_tsc: written when the TSC is read
];

export interface DigestInput {
  wasmMemory: WebAssembly.Memory;
  /** Guest RAM, a view into wasm memory. */
  ram: Uint8Array;
}

/**
 * `previous_ip`: where v86 restarts an instruction that faults. Its interpreter sets it at every
 * instruction, its JIT only before one that may fault, so a machine stepped in the interpreter and
 * one that ran the same instructions compiled can hold different values there; it is not state a
 * later instruction reads before setting it.
 */
const previousIp: [number, number] = [560, 564];

export function stateDigest(input: DigestInput, options: { ignorePreviousIp?: boolean } = {}): string {
  if (!hasher) throw new Error("stateDigest: call loadHasher() first");
  const buffer = input.wasmMemory.buffer;
  const ram = input.ram;
  const cpu = new Uint8Array(buffer, cpuStateStart, cpuStateEnd - cpuStateStart).slice();
  for (const [from, to] of options.ignorePreviousIp ? [...skippedRanges, previousIp] : skippedRanges) cpu.fill(0, from - cpuStateStart, to - cpuStateStart);
  // Streamed in 1 MiB chunks: hashing 128 MiB in one call makes xxhash-wasm grow its own memory
  // to hold a copy (a 250 ms stall on the first digest, long enough to look like a dead node).
  const cpuHash = hasher.h64Raw(cpu, ramHash(ram));
  return cpuHash.toString(16).padStart(16, "0");
}

function ramHash(ram: Uint8Array): bigint {
  if (!hasher) throw new Error("stateDigest: call loadHasher() first");
  const stream = hasher.create64(0n);
  for (let off = 0; off < ram.length; off += chunkBytes) stream.update(ram.subarray(off, off + chunkBytes));
  return stream.digest();
}

/** A digest of guest RAM alone. */
export function ramDigest(ram: Uint8Array): string {
  return ramHash(ram).toString(16).padStart(16, "0");
}
