/**
 * DiskView: what a replayed guest believes it wrote — the last data written to each sector, taken
 * from the write requests it issued (deterministic: they are the primary's, byte for byte). A shared
 * disk is consistent with a log when every sector the guest wrote holds that data.
 */
import { createHash } from "node:crypto";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { sectorBytes } from "./disk-backend.js";

export interface DiskComparison {
  sectorsWritten: number;
  mismatchedSectors: number;
  /** The first sector that differs, if any. */
  firstMismatch?: number;
}

export class DiskView {
  private readonly sectors = new Map<number, Uint8Array>();

  /** Notes the writes among the requests a slice issued. */
  note(requests: DiskRequest[]): void {
    for (const r of requests) {
      if (r.op !== "write") continue;
      for (let at = 0; at < r.length; at += sectorBytes) this.sectors.set((r.offset + at) / sectorBytes, r.data!.subarray(at, at + sectorBytes));
    }
  }

  get sectorsWritten(): number {
    return this.sectors.size;
  }

  /** sha256 over (sector number, data) of every written sector, in sector order. */
  sha256(): string {
    const h = createHash("sha256");
    const index = Buffer.alloc(8);
    for (const n of [...this.sectors.keys()].sort((a, b) => a - b)) {
      index.writeBigUInt64BE(BigInt(n));
      h.update(index).update(this.sectors.get(n)!);
    }
    return h.digest("hex");
  }

  /** Compares with a disk image: `read(offset, length)` gives its bytes. */
  async compare(read: (offset: number, length: number) => Promise<Uint8Array>): Promise<DiskComparison> {
    let mismatched = 0;
    let first: number | undefined;
    for (const n of [...this.sectors.keys()].sort((a, b) => a - b)) {
      const have = await read(n * sectorBytes, sectorBytes);
      if (!Buffer.from(have).equals(Buffer.from(this.sectors.get(n)!))) {
        mismatched++;
        first ??= n;
      }
    }
    return { sectorsWritten: this.sectors.size, mismatchedSectors: mismatched, ...(first !== undefined ? { firstMismatch: first } : {}) };
  }
}
