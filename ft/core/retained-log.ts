/**
 * RetainedLog: the part of the primary's log a node still holds. Entries are numbered from power-on
 * (absolute indexes, the numbering of `have` and `first` on the wire); the log holds entries
 * [base, end) and forgets older ones as nothing needs them any more, so a pair that runs for weeks
 * keeps a bounded log (see LogRetention).
 *
 * It also keeps the running sum of `entryBytes`, so the bytes between any two held entries are
 * known at once (flow control and frame batching count bytes).
 */
import { entryBytes, type LogEntry } from "../../hypervisor/event-log/log-entry.js";

/**
 * While a node's log still starts at power-on and stays within both bounds, it keeps all of it: a
 * backup that attaches soon after the primary started replays it from power-on (no checkpoint, no
 * pause for the guest). Past either bound the log is kept only as long as the backup needs it, and
 * a backup that attaches later joins from a checkpoint of the running primary (FT VMotion).
 */
export interface LogRetention {
  powerOnLogBytesMax: number;
  powerOnLogEntriesMax: number;
}

export const defaultLogRetention: LogRetention = { powerOnLogBytesMax: 16 * 2 ** 20, powerOnLogEntriesMax: 200_000 };

/** Dropped entries are compacted away once this many have piled up at the front (amortized O(1)). */
const compactAfter = 4096;

export class RetainedLog {
  private entries: LogEntry[] = [];
  /** sums[k]: entryBytes of entries[0..k) (running sums; entries before `head` were dropped). */
  private sums: number[] = [0];
  private head = 0;
  private first: number;
  /** Whether every entry since power-on is held (a backup may replay it from there). */
  private whole: boolean;

  constructor(
    /** Index of the first entry held (0: power-on). */
    base = 0,
    private readonly retention: LogRetention = defaultLogRetention,
    /** It starts at power-on (false: after a checkpoint). */
    fromPowerOn = base === 0,
  ) {
    this.first = base;
    this.whole = fromPowerOn;
  }

  /** Index of the oldest entry held. */
  get base(): number {
    return this.first;
  }

  /** Index of the next entry to come (entries held: [base, end)). */
  get end(): number {
    return this.first + this.entries.length - this.head;
  }

  get count(): number {
    return this.entries.length - this.head;
  }

  /** `entryBytes` of the entries held. */
  get bytes(): number {
    return this.sums.at(-1)! - this.sums[this.head]!;
  }

  /**
   * The log still starts at power-on and is kept whole: the retention bounds were never crossed.
   * Once false it stays false.
   */
  get fromPowerOn(): boolean {
    if (this.whole && (this.bytes > this.retention.powerOnLogBytesMax || this.count > this.retention.powerOnLogEntriesMax)) this.whole = false;
    return this.whole;
  }

  append(entry: LogEntry): void {
    this.entries.push(entry);
    this.sums.push(this.sums.at(-1)! + entryBytes(entry));
  }

  /** Entries [from, to) (absolute; both within what is held). */
  slice(from: number, to = this.end): LogEntry[] {
    this.check(from);
    return this.entries.slice(this.head + from - this.first, this.head + to - this.first);
  }

  /** `entryBytes` of entries [from, to). */
  bytesBetween(from: number, to: number): number {
    this.check(from);
    return this.sums[this.head + to - this.first]! - this.sums[this.head + from - this.first]!;
  }

  /**
   * Forgets entries before `index`, unless the log is still kept whole from power-on. Returns how
   * many were dropped.
   */
  forgetBefore(index: number): number {
    if (this.fromPowerOn) return 0;
    const n = Math.min(index, this.end) - this.first;
    if (n <= 0) return 0;
    this.head += n;
    this.first += n;
    if (this.head >= compactAfter && this.head * 2 >= this.entries.length) {
      this.entries = this.entries.slice(this.head);
      this.sums = this.sums.slice(this.head);
      this.head = 0;
    }
    return n;
  }

  private check(from: number): void {
    if (from < this.first) throw new RangeError(`log entry ${from} was dropped (the log is held from ${this.first})`);
  }
}
