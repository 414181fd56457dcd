/**
 * ConsoleCursor: what a console client knows, without any I/O, shared by the terminal client
 * (`lockstep console`, the demo) and the web view in the browser.
 *
 * It keeps the output offset the client reached with the newest bytes before it (the tail), and the
 * input not yet acknowledged. On every (re)attach the client asks for output from a little before its
 * offset (`attachOffset`) and resends the unacknowledged input; `output` compares the bytes a node
 * resends with the tail, so a node that released output its backup never logged shows up as a
 * contradiction, and passes on only the bytes after the offset: nothing is lost or repeated across a
 * failover, and acknowledged input is applied once (the node drops sequence numbers it applied).
 */
import { consoleInputBytesMax, consoleKeysBytesMax, type ConsoleClientMessage } from "../wire/console-messages.js";

/** Output the client could not get: no live node held it any more. */
export interface ConsoleGap {
  /** Stream offsets [from, to) that were skipped. */
  from: number;
  to: number;
  url: string;
}

/** Output a node resent after a re-attach that differs from what the client had received. */
export interface ConsoleContradiction {
  /** Stream offset of the first differing byte. */
  offset: number;
  /** The node that resent it. */
  url: string;
  /** From `offset` on: the bytes received before, and the bytes resent (at most 64 of each). */
  had: Uint8Array;
  resent: Uint8Array;
}

export type CursorOutput =
  | { type: "fresh"; bytes: Uint8Array; contradiction?: ConsoleContradiction }
  | { type: "known"; contradiction?: ConsoleContradiction }
  /** The node skipped ahead of the offset: a broken stream, the connection should be dropped. */
  | { type: "gap"; expected: number; got: number };

const contradictionContextBytes = 64;

export class ConsoleCursor {
  offset = 0;
  /** Output bytes compared with a node's resend after re-attaches, in total. */
  overlapCheckedBytes = 0;
  /** The newest output bytes received (up to `overlapBytes`), ending at `offset`. */
  private tail = new Uint8Array(0);
  /** Per node: the oldest offset it said it still holds, when it refused an earlier one. */
  private readonly servedFrom = new Map<string, number>();
  private seq = 0;
  private unacked: Array<{ seq: number; data: Uint8Array; keys?: true }> = [];
  private unackedBytes = 0;

  constructor(
    private readonly options: {
      /** How much output before the offset is asked for again on a re-attach, to compare (default 4096; 0: no check). */
      overlapBytes?: number;
      /** Input not yet acknowledged, at most. */
      unackedBytesMax?: number;
    } = {},
  ) {}

  /** The input messages for `bytes` (to send now if attached), or undefined when too much is unacknowledged. */
  /** `keys`: the bytes are PS/2 scancodes for the keyboard (the screen's console), not serial bytes. */
  input(bytes: Uint8Array, keys = false): ConsoleClientMessage[] | undefined {
    if (this.unackedBytes + bytes.length > (this.options.unackedBytesMax ?? 1 << 20)) return undefined;
    const out: ConsoleClientMessage[] = [];
    const chunk = keys ? consoleKeysBytesMax : consoleInputBytesMax;
    for (let i = 0; i < bytes.length; i += chunk) {
      const u = { seq: ++this.seq, data: bytes.slice(i, i + chunk), ...(keys ? { keys: true as const } : {}) };
      this.unacked.push(u);
      this.unackedBytes += u.data.length;
      out.push({ type: "input", ...u });
    }
    return out;
  }

  /** Every input message not acknowledged yet, oldest first (to resend). */
  pending(): ConsoleClientMessage[] {
    return this.unacked.map((u) => ({ type: "input", ...u }));
  }

  /** The sequence number of the oldest unacknowledged input, if any. */
  get oldestPending(): number | undefined {
    return this.unacked[0]?.seq;
  }

  acknowledged(seq: number): void {
    while (this.unacked.length > 0 && this.unacked[0]!.seq <= seq) this.unackedBytes -= this.unacked.shift()!.data.length;
  }

  /** Where to attach on `url`: up to `overlapBytes` before the offset reached, as far as the node holds. */
  attachOffset(url: string): number {
    return Math.min(this.offset, Math.max(this.offset - this.tail.length, this.servedFrom.get(url) ?? 0));
  }

  /** Output bytes [at, at + data.length) from `url`; `check`: compare the part already received. */
  output(at: number, data: Uint8Array, url: string, check: boolean): CursorOutput {
    if (at > this.offset) return { type: "gap", expected: this.offset, got: at };
    const known = Math.min(this.offset - at, data.length);
    const contradiction = known > 0 && check ? this.compare(at, data.subarray(0, known), url) : undefined;
    const c = contradiction ? { contradiction } : {};
    if (known === data.length) return { type: "known", ...c };
    const fresh = data.subarray(known);
    this.offset += fresh.length;
    this.keepTail(fresh);
    return { type: "fresh", bytes: fresh, ...c };
  }

  /**
   * The node refused the attach at `attachedAt`: it holds output only from `from` on (a backup that
   * joined from a checkpoint). Returns the gap when the client had not read up to there: that output
   * is held by no live node and is skipped; otherwise the next attach there asks from `from`.
   */
  refused(url: string, attachedAt: number, from: number | undefined): ConsoleGap | undefined {
    if (from !== undefined && from > this.offset) {
      const gap: ConsoleGap = { from: this.offset, to: from, url };
      this.offset = from;
      this.tail = new Uint8Array(0);
      return gap;
    }
    if (attachedAt < this.offset) this.servedFrom.set(url, from ?? this.offset);
    return undefined;
  }

  private keepTail(fresh: Uint8Array): void {
    const max = this.options.overlapBytes ?? 4096;
    if (fresh.length >= max) {
      this.tail = fresh.slice(fresh.length - max);
      return;
    }
    const keep = Math.min(this.tail.length, max - fresh.length);
    const next = new Uint8Array(keep + fresh.length);
    next.set(this.tail.subarray(this.tail.length - keep));
    next.set(fresh, keep);
    this.tail = next;
  }

  /** Compares resent bytes (from stream offset `at`) with those received. */
  private compare(at: number, resent: Uint8Array, url: string): ConsoleContradiction | undefined {
    const tailStart = this.offset - this.tail.length;
    // bytes older than the tail cannot be checked (the attach never asks for them)
    const from = Math.max(at, tailStart);
    for (let i = from - at; i < resent.length; i++) {
      const j = at + i - tailStart;
      this.overlapCheckedBytes++;
      if (resent[i] === this.tail[j]) continue;
      return { offset: at + i, url, had: this.tail.slice(j, j + contradictionContextBytes), resent: resent.slice(i, i + contradictionContextBytes) };
    }
    return undefined;
  }
}

/** The offset a node that refused an attach (close code 4002) says it holds output from. */
export function refusedFrom(reason: string): number | undefined {
  const have = /have (\d+)\.\./.exec(reason);
  return have ? Number(have[1]) : undefined;
}
