/**
 * The simulated shared disk of a lockstep pair, and each node's path to it. A live primary reaches
 * it the way LockstepNode does: through the production BackendDiskPort and DiskScheduler (writes held
 * until the output rule releases them, overlapping requests in issue order, failures retried with
 * the guest paused), against a DiskBackend whose operations the simulation settles tick by tick.
 *
 *   - An operation takes effect on the disk at one instant, a seeded number of ticks after it was
 *     issued (a write lands, a read samples the sectors), whether or not its node is paused: the
 *     storage does it. Its completion runs on the node's event loop (SimDiskPath), so a paused node
 *     sees it only when it runs again; retry timers run there too.
 *   - A path may fail for a while (an outage): its operations fail, the scheduler retries them and
 *     reports the stall, and the node's core pauses the guest.
 *   - When a node dies (killed or halted) its completions are dropped; each write it had in flight
 *     still lands at its time or never (seeded): the process may or may not have handed it over.
 *
 * The backend's promises are SimOps: thenables settled synchronously by the simulation, so that the
 * production scheduler runs inside the synchronous tick loop. (It only chains `then`; were it to
 * `await`, its completions would never run here and the simulation would fail loudly.)
 */
import type { DiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { BackendDiskPort, type DiskCompletionSink } from "../../hypervisor/disk/disk-port.js";
import type { SeededRandom } from "./seeded-random.js";

/** A thenable the simulation settles; callbacks run synchronously when it does (errors propagate). */
export class SimOp<T> implements PromiseLike<T> {
  private settled: { ok: true; value: T } | { ok: false; error: unknown } | undefined;
  private waiters: Array<() => void> = [];

  then<A = T, B = never>(onOk?: ((value: T) => A | PromiseLike<A>) | null, onErr?: ((error: unknown) => B | PromiseLike<B>) | null): SimOp<A | B> {
    const next = new SimOp<A | B>();
    const run = () => {
      const s = this.settled!;
      if (s.ok) next.resolve(onOk ? (onOk(s.value) as A) : (s.value as unknown as A));
      else if (onErr) next.resolve(onErr(s.error) as B);
      else next.reject(s.error);
    };
    if (this.settled) run();
    else this.waiters.push(run);
    return next;
  }

  resolve(value: T): void {
    this.settle({ ok: true, value });
  }

  reject(error: unknown): void {
    this.settle({ ok: false, error });
  }

  private settle(s: { ok: true; value: T } | { ok: false; error: unknown }): void {
    if (this.settled) return;
    this.settled = s;
    for (const w of this.waiters.splice(0)) w();
  }
}

/** A node's event loop as far as the disk goes: completions and timers, run when the node runs. */
export class SimDiskPath {
  dead = false;
  /** The path fails until this tick (an outage). */
  downUntil = -1;
  private queue: Array<{ at: number; fn: () => void }> = [];

  constructor(readonly name: string) {}

  post(at: number, fn: () => void): void {
    if (!this.dead) this.queue.push({ at, fn });
  }

  /** Runs everything due by `now`, oldest first (what it runs may post more). */
  run(now: number): void {
    for (;;) {
      let best = -1;
      for (let i = 0; i < this.queue.length; i++) if (this.queue[i]!.at <= now && (best < 0 || this.queue[i]!.at < this.queue[best]!.at)) best = i;
      if (best < 0 || this.dead) return;
      this.queue.splice(best, 1)[0]!.fn();
    }
  }
}

export interface SimDiskOptions {
  /** Ticks an operation takes at most (at least 1). */
  latencyMaxTicks: number;
  /** Ticks before the scheduler retries a failed operation. */
  retryTicks: number;
}

export interface SimDiskObserver {
  /** A write leaves its node for the disk (the moment the output rule must already allow it). */
  writeIssued(path: SimDiskPath, offset: number, data: Uint8Array): void;
  /** A write lands on the disk. */
  writeLanded(path: SimDiskPath, offset: number, data: Uint8Array): void;
}

interface Op {
  at: number;
  path: SimDiskPath;
  offset: number;
  length: number;
  data: Uint8Array | undefined;
  fails: boolean;
  done: SimOp<Uint8Array | undefined>;
}

export class SimSharedDisk {
  readonly image: Uint8Array;
  private ops: Op[] = [];
  readonly stats = { writes: 0, reads: 0, failed: 0 };

  constructor(
    bytes: number,
    private readonly r: SeededRandom,
    private readonly now: () => number,
    private readonly options: SimDiskOptions,
    private readonly observer: SimDiskObserver,
  ) {
    this.image = new Uint8Array(bytes);
  }

  /** A live primary's port onto the disk, wired as LockstepNode wires its own. */
  port(path: SimDiskPath, sink: DiskCompletionSink, onStall: (reason: string | undefined) => void): BackendDiskPort {
    return new BackendDiskPort(this.backend(path), sink, {
      holdWrites: true,
      wake: () => {},
      onStall,
      retryMs: this.options.retryTicks,
      setTimer: (fn, ms) => path.post(this.now() + ms, fn),
      now: this.now,
    });
  }

  private backend(path: SimDiskPath): DiskBackend {
    return {
      description: `sim disk via ${path.name}`,
      bytes: this.image.length,
      read: (offset, length) => this.issue(path, offset, length, undefined) as unknown as Promise<Uint8Array>,
      write: (offset, data) => {
        this.observer.writeIssued(path, offset, data);
        return this.issue(path, offset, data.length, data.slice()) as unknown as Promise<void>;
      },
      close: async () => {},
    };
  }

  private issue(path: SimDiskPath, offset: number, length: number, data: Uint8Array | undefined): SimOp<Uint8Array | undefined> {
    const done = new SimOp<Uint8Array | undefined>();
    const at = this.now() + this.r.int(1, this.options.latencyMaxTicks);
    this.ops.push({ at, path, offset, length, data, fails: this.now() <= path.downUntil || at <= path.downUntil, done });
    return done;
  }

  /** Operations due take effect; their completions go to their nodes' event loops. */
  tick(): void {
    const now = this.now();
    const due = this.ops.filter((o) => o.at <= now);
    if (due.length === 0) return;
    this.ops = this.ops.filter((o) => o.at > now);
    for (const o of due) {
      if (o.fails) {
        this.stats.failed++;
        o.path.post(now, () => o.done.reject(new Error("simulated I/O error")));
        continue;
      }
      if (o.data) {
        this.image.set(o.data, o.offset);
        this.stats.writes++;
        this.observer.writeLanded(o.path, o.offset, o.data);
        o.path.post(now, () => o.done.resolve(undefined));
      } else {
        const data = this.image.slice(o.offset, o.offset + o.length);
        this.stats.reads++;
        o.path.post(now, () => o.done.resolve(data));
      }
    }
  }

  /** The node died: no completion reaches it; each write it had in flight lands at its time or never. */
  abandon(path: SimDiskPath): void {
    path.dead = true;
    this.ops = this.ops.filter((o) => o.path !== path || (o.data !== undefined && !o.fails && this.r.chance(0.5)));
  }
}
