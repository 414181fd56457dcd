/**
 * ScriptedGuestDisk: the scripted guest's hard disk driver, for simulations. It issues reads and
 * writes through the production BounceDisk (request ids from 1 in issue order, as on every machine
 * fed the same log), at most `inFlightMax` at a time, and remembers what it was told:
 *
 *   - a write's data names the write in every sector it covers (bytes 0-3: request id, 4-7: sector,
 *     the rest one fill byte that depends on the guest's state), so a sector of the shared disk says
 *     which write it holds and whether it is whole;
 *   - `completed[s]`: the newest write to sector s whose completion the guest saw (a disk-write entry);
 *   - a read's data must come from the newest write to each sector issued before the read, or from a
 *     write issued while the read was pending (the two raced; either order is a disk's right). A read
 *     that returns anything else — an older write, a torn sector — is recorded in `anomalies` (the
 *     simulation holds the live primary to none: a primary superseded by its backup may well read
 *     the new primary's writes, and nothing it does after that counts).
 *
 * `allowedContent(s)`: what sector s of the shared disk may hold as far as this guest knows — the
 * newest write it saw completed, or a write to s issued after it and still pending (in flight, or
 * re-issued after a takeover). Anything else means a write acknowledged to the guest was lost or
 * overwritten out of order.
 */
import { BounceDisk, type DiskRequest } from "../../emulator/bounce-disk.js";

export const simSectorBytes = 64;

/** The guest's disk state carried by a checkpoint (taken with no request in flight). */
export interface GuestDiskState {
  nextRequestId: number;
  lastIssued: number[];
  completed: number[];
  anomalies: string[];
}

export class ScriptedGuestDisk {
  readonly disk: BounceDisk;
  /** Per sector: the newest write issued (request id, 0: none). */
  private lastIssued: number[];
  /** Per sector: the newest write whose completion the guest saw (0: none, the disk's zeros). */
  private completed: number[];
  /** Pending reads: per sector of the read, the writes whose data it may return. */
  private reads = new Map<number, { first: number; allowed: number[][] }>();
  /** Pending writes: the sectors they cover. */
  private writes = new Map<number, { first: number; count: number }>();
  /** Reads that returned what no disk could have (see above). */
  anomalies: string[] = [];

  constructor(
    readonly sectors: number,
    private readonly inFlightMax: number,
    /** Called with every completion, to fold into the guest's state (reads with their data). */
    private readonly completion: (id: number, data?: Uint8Array) => void,
  ) {
    this.disk = new BounceDisk(sectors * simSectorBytes);
    this.lastIssued = new Array<number>(sectors).fill(0);
    this.completed = new Array<number>(sectors).fill(0);
  }

  get inFlight(): number {
    return this.disk.inFlight;
  }

  /** Issues a request chosen by `choice` (a number from the guest's state), if fewer than the maximum are in flight. */
  maybeIssue(choice: number): void {
    if (this.disk.inFlight >= this.inFlightMax) return;
    const first = choice % this.sectors;
    const count = Math.min(1 + ((choice >>> 8) & 1), this.sectors - first);
    const id = this.disk.nextRequestId;
    if (((choice >>> 9) & 3) === 0) {
      const allowed = Array.from({ length: count }, (_, i) => [this.lastIssued[first + i]!]);
      this.reads.set(id, { first, allowed });
      this.disk.get(first * simSectorBytes, count * simSectorBytes, (data) => this.readDone(id, data));
      return;
    }
    const data = new Uint8Array(count * simSectorBytes);
    const view = new DataView(data.buffer);
    for (let i = 0; i < count; i++) {
      view.setUint32(i * simSectorBytes, id, true);
      view.setUint32(i * simSectorBytes + 4, first + i, true);
      data.fill((choice >>> 12) & 0xff, i * simSectorBytes + 8, (i + 1) * simSectorBytes);
    }
    for (const r of this.reads.values()) {
      for (let i = 0; i < r.allowed.length; i++) if (r.first + i >= first && r.first + i < first + count) r.allowed[i]!.push(id);
    }
    for (let i = 0; i < count; i++) this.lastIssued[first + i] = id;
    this.writes.set(id, { first, count });
    this.disk.set(first * simSectorBytes, data, () => {
      this.writes.delete(id);
      for (let i = 0; i < count; i++) this.completed[first + i] = Math.max(this.completed[first + i]!, id);
      this.completion(id);
    });
  }

  private readDone(id: number, data: Uint8Array): void {
    const r = this.reads.get(id)!;
    this.reads.delete(id);
    for (let i = 0; i < r.allowed.length; i++) {
      const sector = r.first + i;
      const got = sectorWriter(data, i * simSectorBytes, sector);
      if (!r.allowed[i]!.includes(got)) this.anomalies.push(`disk read ${id} of sector ${sector} returned ${got < 0 ? "a torn sector" : `write ${got}`}; it may return only write ${r.allowed[i]!.join(" or ")}`);
    }
    this.completion(id, data);
  }

  /** Whether sector `s` of the shared disk may hold write `id` now, as far as this guest knows (0: zeros). */
  mayHold(s: number, id: number): boolean {
    const done = this.completed[s]!;
    if (id === done) return true;
    const w = this.writes.get(id);
    return w !== undefined && id > done && w.first <= s && s < w.first + w.count;
  }

  /** What sector `s` may hold (for messages): the newest write seen completed, then newer pending ones. */
  allowedContent(s: number): number[] {
    const done = this.completed[s]!;
    return [done, ...[...this.writes.keys()].filter((id) => this.mayHold(s, id) && id !== done)];
  }

  /** Requests issued and not completed, in order (a machine that takes over issues them again). */
  pending(): DiskRequest[] {
    return this.disk.pending();
  }

  save(): GuestDiskState {
    if (this.disk.inFlight > 0) throw new Error("checkpoint with disk requests in flight");
    return { nextRequestId: this.disk.nextRequestId, lastIssued: [...this.lastIssued], completed: [...this.completed], anomalies: [...this.anomalies] };
  }

  restore(s: GuestDiskState): void {
    this.disk.nextRequestId = s.nextRequestId;
    this.lastIssued = [...s.lastIssued];
    this.completed = [...s.completed];
    this.anomalies = [...s.anomalies];
  }
}

/**
 * The write a sector's bytes name (0: never written), or -1 when the sector is not one write's whole
 * sector (torn, mixed, or written for another sector).
 */
export function sectorWriter(bytes: Uint8Array, at: number, sector: number): number {
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, simSectorBytes);
  const id = view.getUint32(0, true);
  const fill = bytes[at + 8]!;
  if (id === 0) return bytes.subarray(at, at + simSectorBytes).every((b) => b === 0) ? 0 : -1;
  if (view.getUint32(4, true) !== sector) return -1;
  for (let i = 8; i < simSectorBytes; i++) if (bytes[at + i] !== fill) return -1;
  return id;
}
