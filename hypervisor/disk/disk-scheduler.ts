/**
 * DiskScheduler: the live primary's disk I/O. Requests come from the guest's BounceDisk (tagged with
 * the slice that issued them) and go to the backend; completions go back through the log (the
 * caller's `onRead`/`onWrite` queue them for the next slice boundary).
 *
 * Rules:
 *   - Output rule: a write goes to the backend only once `release(slice)` covered the slice that
 *     issued it (the backup has the log through there). Reads go at once.
 *   - Disk lease: a write starts only before the time `release` last allowed (`untilMs`, on the
 *     `now` clock): after it, the backup may have gone live and own the disk. Writes wait for the
 *     next release that extends it.
 *   - Racing requests to overlapping sectors are serialised in the order the guest issued them: a
 *     request starts only when every earlier request it overlaps has finished.
 *   - Backend errors lose nothing: the request is retried every `retryMs` and the scheduler reports
 *     itself stalled (the caller pauses the guest and logs why) until a retry succeeds.
 * At takeover the new primary submits every request its machine has no completion for (re-issue):
 * a write that the old primary already made is made again with the same data.
 */
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { WriteNotStarted, type DiskBackend } from "./disk-backend.js";

export interface DiskSchedulerOptions {
  /** A read finished: queue its completion (with the data) for the next slice boundary. */
  onRead: (id: number, data: Uint8Array) => void;
  /** A write is on the disk: queue its completion for the next slice boundary. */
  onWrite: (id: number) => void;
  /** The backend failed (`reason`) or recovered (`undefined`). */
  onStall: (reason: string | undefined) => void;
  /** Delay before retrying a failed request (ms). */
  retryMs?: number;
  /** Timers (injectable for tests). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  /** The clock of release's `untilMs` (ms; default host Unix ms, the node core's clock). */
  now?: () => number;
}

interface Item {
  request: DiskRequest;
  tag: number;
  running: boolean;
}

export class DiskScheduler {
  private queue: Item[] = [];
  private releasedThrough = Number.NEGATIVE_INFINITY;
  private writableUntilMs = Number.POSITIVE_INFINITY;
  private stallReason: string | undefined;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  /** Bytes read and written through the backend (for status and benchmarks). */
  readonly totals = { reads: 0, writes: 0, bytesRead: 0, bytesWritten: 0, retries: 0 };

  constructor(
    private readonly backend: DiskBackend,
    private readonly options: DiskSchedulerOptions,
  ) {}

  /** The reason the backend is failing, or undefined when it works. */
  get stalled(): string | undefined {
    return this.stallReason;
  }

  /** Requests not finished (queued, held or running). */
  get outstanding(): number {
    return this.queue.length;
  }

  /** Writes waiting for the output rule (or the disk lease). */
  get heldWrites(): number {
    return this.queue.filter((i) => i.request.op === "write" && !this.writable(i)).length;
  }

  submit(requests: DiskRequest[], tag: number): void {
    if (this.closed) return;
    for (const request of requests) {
      if (request.offset < 0 || request.offset + request.length > this.backend.bytes) {
        throw new Error(`disk request ${request.id} [${request.offset}, +${request.length}) is outside the ${this.backend.bytes}-byte disk`);
      }
      this.queue.push({ request, tag, running: false });
    }
    this.pump();
  }

  /** The output rule moved: writes issued in slices <= `slice` may go to the backend, if they start before `untilMs`. */
  release(slice: number, untilMs = Number.POSITIVE_INFINITY): void {
    if (slice <= this.releasedThrough && untilMs === this.writableUntilMs) return;
    this.releasedThrough = Math.max(this.releasedThrough, slice);
    this.writableUntilMs = untilMs;
    this.pump();
  }

  private writable(item: Item): boolean {
    if (item.tag > this.releasedThrough) return false;
    return this.writableUntilMs === Number.POSITIVE_INFINITY || (this.options.now ?? hostNowMs)() < this.writableUntilMs;
  }

  /** Resolves when nothing is outstanding (e.g. before a clean stop, after releasing everything). */
  idle(): Promise<void> {
    if (this.queue.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Stops issuing; completions of requests in flight are dropped. */
  close(): void {
    this.closed = true;
  }

  private pump(): void {
    if (this.closed) return;
    for (let i = 0; i < this.queue.length; i++) {
      const item = this.queue[i]!;
      if (item.running) continue;
      if (item.request.op === "write" && !this.writable(item)) continue;
      if (this.overlapsEarlier(i)) continue;
      this.start(item);
    }
  }

  /** Whether a request queued before index `i` (running or not) overlaps the one at `i`. */
  private overlapsEarlier(i: number): boolean {
    const r = this.queue[i]!.request;
    for (let j = 0; j < i; j++) if (overlaps(this.queue[j]!.request, r)) return true;
    return false;
  }

  private start(item: Item): void {
    item.running = true;
    const r = item.request;
    // a write under a lease asks it again at the very last moment (see DiskBackend.write)
    const mayStart = this.writableUntilMs === Number.POSITIVE_INFINITY ? undefined : () => this.writable(item);
    const op = r.op === "read" ? this.backend.read(r.offset, r.length) : this.backend.write(r.offset, r.data!, mayStart).then(() => undefined);
    op.then(
      (data) => {
        if (this.closed) return;
        if (r.op === "read") {
          this.totals.reads++;
          this.totals.bytesRead += r.length;
          this.options.onRead(r.id, data!);
        } else {
          this.totals.writes++;
          this.totals.bytesWritten += r.length;
          this.options.onWrite(r.id);
        }
        this.queue.splice(this.queue.indexOf(item), 1);
        if (this.stallReason !== undefined) {
          this.stallReason = undefined;
          this.options.onStall(undefined);
        }
        if (this.queue.length === 0) for (const w of this.idleWaiters.splice(0)) w();
        this.pump();
      },
      (e: unknown) => {
        if (this.closed) return;
        if (e instanceof WriteNotStarted) {
          // the lease ended on the way: it waits for the next release, like one never started
          item.running = false;
          return;
        }
        const reason = `${r.op} of ${r.length} bytes at ${r.offset} on ${this.backend.description} failed: ${(e as Error).message}`;
        if (this.stallReason === undefined) {
          this.stallReason = reason;
          this.options.onStall(reason);
        }
        this.totals.retries++;
        const setTimer = this.options.setTimer ?? ((fn: () => void, ms: number) => setTimeout(fn, ms).unref());
        setTimer(() => {
          item.running = false;
          this.pump();
        }, this.options.retryMs ?? 1000);
      },
    );
  }
}

const hostNowMs = () => performance.timeOrigin + performance.now();

const overlaps = (a: DiskRequest, b: DiskRequest) => a.offset < b.offset + b.length && b.offset < a.offset + a.length;
