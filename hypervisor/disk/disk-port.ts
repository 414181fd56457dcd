/**
 * Disk ports: how a recording machine's disk requests (from its BounceDisk, reported in each
 * SliceResult) are served. Either way the completions go through the Recorder, so they are logged
 * and applied at a slice boundary, and a replay of the log needs no disk.
 *
 *   MemoryDiskPort   an image in this process's memory, served at once (run, record, tests).
 *   BackendDiskPort  a DiskBackend through a DiskScheduler (the FT primary on its shared disk):
 *                    asynchronous, writes held by the output rule, overlaps serialised, errors
 *                    retried while the guest is paused.
 */
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import type { DiskBackend } from "./disk-backend.js";
import { DiskScheduler } from "./disk-scheduler.js";

/** Where completions go: the Recorder, or a machine thread that hands them to its Recorder. */
export interface DiskCompletionSink {
  queueDiskRead(id: number, data: Uint8Array): void;
  queueDiskWrite(id: number): void;
}

export interface DiskPort {
  /** Serves the requests the guest issued in the slice that just ended (`slice`: the boundary after it). */
  submit(requests: DiskRequest[], slice: number): void;
}

export class MemoryDiskPort implements DiskPort {
  constructor(
    /** The disk's contents; the guest's writes land here. */
    readonly image: Uint8Array,
    private readonly recorder: DiskCompletionSink,
  ) {}

  submit(requests: DiskRequest[]): void {
    for (const r of requests) {
      if (r.op === "read") this.recorder.queueDiskRead(r.id, this.image.slice(r.offset, r.offset + r.length));
      else {
        this.image.set(r.data!, r.offset);
        this.recorder.queueDiskWrite(r.id);
      }
    }
  }
}

export interface BackendDiskPortOptions {
  /** Hold writes until `release()` covers the slice that issued them (FT); false: write at once. */
  holdWrites: boolean;
  /** A completion was queued: the live loop should run the next boundary soon. */
  wake: () => void;
  /** The backend failed (reason) or recovered (undefined). */
  onStall: (reason: string | undefined) => void;
  retryMs?: number;
  /** Timers for retries and the clock of the disk lease (the simulation runs both on its own clock). */
  setTimer?: (fn: () => void, ms: number) => unknown;
  now?: () => number;
}

export class BackendDiskPort implements DiskPort {
  readonly scheduler: DiskScheduler;

  constructor(
    readonly backend: DiskBackend,
    recorder: DiskCompletionSink,
    options: BackendDiskPortOptions,
  ) {
    this.scheduler = new DiskScheduler(backend, {
      onRead: (id, data) => {
        recorder.queueDiskRead(id, data);
        options.wake();
      },
      onWrite: (id) => {
        recorder.queueDiskWrite(id);
        options.wake();
      },
      onStall: options.onStall,
      ...(options.retryMs !== undefined ? { retryMs: options.retryMs } : {}),
      ...(options.setTimer ? { setTimer: options.setTimer } : {}),
      ...(options.now ? { now: options.now } : {}),
    });
    if (!options.holdWrites) this.scheduler.release(Number.POSITIVE_INFINITY);
  }

  submit(requests: DiskRequest[], slice: number): void {
    if (requests.length > 0) this.scheduler.submit(requests, slice);
  }

  /** The output rule: writes issued through `slice` may go to the disk, if they start before `untilMs` (the disk lease). */
  release(slice: number, untilMs?: number): void {
    this.scheduler.release(slice, untilMs);
  }

  /** Writes everything still held and waits until the backend has it all; then closes it. */
  async drainAndClose(): Promise<void> {
    this.scheduler.release(Number.POSITIVE_INFINITY);
    await this.scheduler.idle();
    this.scheduler.close();
    await this.backend.close();
  }
}
