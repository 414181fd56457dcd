/**
 * Replayer: the backup's and offline replay's side of deterministic execution. It applies logged
 * entries at exactly the boundary they name, checks every entry's instruction count and every digest
 * against its own machine, and stops at the first disagreement with a divergence error carrying both
 * sides (rr and QEMU replay: a missing or mismatched event stops the run at once). It never reads the
 * wall clock: idle time costs nothing to replay.
 *
 * Instruction counts never go down, so a machine already past the instruction count of the next
 * entry can never meet it: that is a divergence at once, not after running on to the entry's slice
 * (which a damaged log may put arbitrarily far ahead).
 */
import { DiskCompletionError } from "../emulator/bounce-disk.js";
import { ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import type { SliceResult } from "../emulator/v86-machine.js";
import { describeEntry, type LogEntry } from "./event-log/log-entry.js";
import type { SliceDriver } from "./slice-driver.js";

export interface ReplayOptions {
  /** Called before every slice, once its boundary's entries were applied (a debugger captures the machine there). */
  beforeSlice?: (slice: number) => void;
  /** Called after every slice with its result. */
  onSlice?: (result: SliceResult, slice: number) => void;
  /** Called after each entry was applied. */
  onEntry?: (entry: LogEntry) => void;
  /** Stop at this boundary (slices completed) even if the log goes on. */
  untilSlice?: number;
  /** A test hook: flip one RAM byte at a boundary (to prove divergence is caught). */
  perturb?: { slice: number; ramOffset: number };
}

export type ReplayEnd = "power-off" | "end-of-log" | "until";

export interface ReplaySummary {
  slices: number;
  instructions: number;
  entries: number;
  digestsChecked: number;
  /** The last boundary at which an entry or digest was verified. */
  lastVerifiedSlice: number;
  end: ReplayEnd;
}

export class Replayer {
  private entries = 0;
  private digestsChecked = 0;
  private lastVerifiedSlice = 0;
  private perturbed = false;

  constructor(
    readonly driver: SliceDriver,
    private readonly nextEntry: () => LogEntry | undefined,
    private readonly options: ReplayOptions = {},
  ) {}

  private divergence(entry: LogEntry, what: string, logValue: unknown, replayValue: unknown): LockstepError {
    return new LockstepError(
      ErrorCode.divergence,
      `Replay diverged at slice ${entry.slice}: ${what} is ${String(logValue)} in the log but ${String(replayValue)} in replay ` +
        `(last agreement at slice ${this.lastVerifiedSlice}; entry: ${describeEntry(entry)})`,
      "the log does not belong to this machine and disk, was tampered with, or execution is not deterministic",
      { slice: entry.slice, what, log: logValue, replay: replayValue, lastVerifiedSlice: this.lastVerifiedSlice },
    );
  }

  /** Runs to the end of the log (or `untilSlice`), synchronously. */
  run(): ReplaySummary {
    let end: ReplayEnd | undefined;
    while (!end) end = this.step(Number.POSITIVE_INFINITY);
    return this.summary(end);
  }

  /** Replays up to `slicesMax` slices; returns how it ended, or undefined if there is more. */
  step(slicesMax: number): ReplayEnd | undefined {
    const d = this.driver;
    let pending = this.peek();
    for (let n = 0; n < slicesMax; n++) {
      while (pending && pending.slice === d.slice) {
        this.consume();
        if (this.applyEntry(pending)) return "power-off";
        pending = this.peek();
      }
      if (pending && pending.slice < d.slice) {
        throw new LockstepError(ErrorCode.logCorrupt, `Log entry for slice ${pending.slice} comes after slice ${d.slice}: entries are out of order`);
      }
      if (this.options.untilSlice !== undefined && d.slice >= this.options.untilSlice) return "until";
      if (!pending) return "end-of-log";
      const p = this.options.perturb;
      if (p && !this.perturbed && d.slice >= p.slice) {
        d.machine.perturbRam(p.ramOffset);
        this.perturbed = true;
      }
      this.options.beforeSlice?.(d.slice);
      const result = d.runSlice();
      this.options.onSlice?.(result, d.slice);
      this.checkReachable(pending);
    }
    return undefined;
  }

  /** Throws when the machine ran past the instruction count of the entry it is heading for. */
  private checkReachable(pending: LogEntry | undefined): void {
    const d = this.driver;
    if (!pending || d.icount <= pending.icount) return;
    throw new LockstepError(
      ErrorCode.divergence,
      `Replay diverged before slice ${pending.slice}: the log's next entry is at instruction count ${pending.icount} but replay is at ${d.icount} already, at slice ${d.slice} ` +
        `(last agreement at slice ${this.lastVerifiedSlice}; entry: ${describeEntry(pending)})`,
      "the log does not belong to this machine and disk, was tampered with, or execution is not deterministic",
      { slice: d.slice, what: "the instruction count", log: pending.icount, replay: d.icount, lastVerifiedSlice: this.lastVerifiedSlice },
    );
  }

  /**
   * Follows a log that is still growing (the backup): applies entries and runs slices up to the
   * boundary `limitSlice` through which the log is complete, and no further. An absent next entry
   * means "not received yet", not the end. Returns "caught-up" at the limit.
   */
  follow(limitSlice: number, slicesMax: number): "power-off" | "caught-up" | undefined {
    const d = this.driver;
    for (let n = 0; n <= slicesMax; n++) {
      let pending = this.peek();
      while (pending && pending.slice === d.slice && d.slice <= limitSlice) {
        this.consume();
        if (this.applyEntry(pending)) return "power-off";
        pending = this.peek();
      }
      if (d.slice >= limitSlice) return "caught-up";
      if (n === slicesMax) break;
      const result = d.runSlice();
      this.options.onSlice?.(result, d.slice);
      this.checkReachable(pending);
    }
    return undefined;
  }

  /** Verifies and applies one entry at the current boundary; true at power-off. */
  private applyEntry(entry: LogEntry): boolean {
    const d = this.driver;
    this.entries++;
    if (entry.icount !== d.icount) throw this.divergence(entry, "the instruction count", entry.icount, d.icount);
    if (entry.kind === "digest") {
      const mine = d.machine.digest();
      if (mine !== entry.digest) throw this.divergence(entry, "the state digest", entry.digest, mine);
      this.digestsChecked++;
    }
    this.lastVerifiedSlice = d.slice;
    if (entry.kind === "control" && entry.action === "power-off") return true;
    try {
      d.apply(entry);
    } catch (e) {
      if (e instanceof DiskCompletionError) throw this.divergence(entry, "the disk request", e.message, "what the guest issued");
      throw e;
    }
    this.options.onEntry?.(entry);
    return false;
  }

  private lookahead: LogEntry | null = null;
  private peek(): LogEntry | undefined {
    if (this.lookahead === null) this.lookahead = this.nextEntry() ?? null;
    return this.lookahead ?? undefined;
  }
  private consume(): void {
    this.lookahead = null;
  }

  /** An entry was read from the log and not applied yet (the first one of a later boundary). */
  get holdsEntry(): boolean {
    return this.lookahead !== null;
  }

  /** Digests verified so far. */
  get digestsVerified(): number {
    return this.digestsChecked;
  }

  summary(end: ReplayEnd): ReplaySummary {
    return {
      slices: this.driver.slice,
      instructions: this.driver.icount,
      entries: this.entries,
      digestsChecked: this.digestsChecked,
      lastVerifiedSlice: this.lastVerifiedSlice,
      end,
    };
  }
}
