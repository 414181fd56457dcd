/**
 * LiveLoop: the imperative shell around a Recorder. It reads the host's clock (only here, never on
 * the guest's path: the reading becomes logged clock entries), sleeps while the guest idles, runs
 * slices in short batches and yields to the event loop between them, so that console input, sockets
 * and timers are served while the guest runs.
 */
import type { Recorder } from "./recorder.js";
import type { SliceResult } from "../emulator/v86-machine.js";
import type { DiskPort } from "./disk/disk-port.js";
import { WallPacer } from "./wall-pacer.js";

export interface LiveLoopOptions {
  /** Follow wall time (live); false runs as fast as possible and skips idle time. */
  paced: boolean;
  /** Called after every slice, with its result (serial output, icount...). */
  onSlice: (result: SliceResult, slice: number) => void;
  /** Host ms of slices per batch before yielding to the event loop. */
  batchWallMs?: number;
  /** Host clock in ms (injectable for tests). */
  nowMs?: () => number;
  /** Flow control: false pauses the guest at the boundary until `wake()` (or 5 ms pass). */
  mayRun?: () => boolean;
  /**
   * Unix ms of guest time 0 (the clock's epoch), for a run that starts at power-on: guest time then
   * follows the host's calendar clock, so the time spent loading the machine before the first slice
   * is caught up with a logged jump instead of leaving the guest's clock that far behind.
   */
  wallEpochMs?: number;
  /** Serves the guest's disk requests after every slice. */
  disk?: DiskPort;
  /** Host calendar clock in Unix ms (injectable for tests). */
  unixNowMs?: () => number;
}

export class LiveLoop {
  private stopping = false;
  private wakeWait: (() => void) | undefined;
  private readonly nowMs: () => number;

  constructor(
    private readonly recorder: Recorder,
    private readonly options: LiveLoopOptions,
  ) {
    this.nowMs = options.nowMs ?? (() => performance.now());
  }


  /** Ends a wait early: input was queued. */
  wake(): void {
    const w = this.wakeWait;
    this.wakeWait = undefined;
    w?.();
  }

  /** Stops at the next boundary; `run()` then logs power-off and resolves. */
  stop(): void {
    this.stopping = true;
    this.wake();
  }

  async run(): Promise<void> {
    const batchWallMs = this.options.batchWallMs ?? 10;
    const pacer = new WallPacer(this.recorder.driver.clock.peekMs(), {
      nowMs: this.nowMs,
      ...(this.options.wallEpochMs !== undefined ? { wallEpochMs: this.options.wallEpochMs } : {}),
      ...(this.options.unixNowMs ? { unixNowMs: this.options.unixNowMs } : {}),
    });
    const driver = this.recorder.driver;
    while (!this.stopping) {
      const batchStart = this.nowMs();
      while (!this.stopping && this.nowMs() - batchStart < batchWallMs) {
        if (this.options.mayRun && !this.options.mayRun()) {
          await this.sleep(5);
          break;
        }
        const decision = this.recorder.boundary(this.options.paced ? pacer.guestMs() : undefined);
        if (decision.action === "wait") {
          await this.sleep(decision.waitMs);
          break;
        }
        const result = driver.runSlice();
        if (result.diskRequests.length > 0) this.options.disk?.submit(result.diskRequests, driver.slice);
        this.options.onSlice(result, driver.slice);
      }
      if (!this.stopping) await new Promise<void>((resolve) => setImmediate(resolve));
    }
    this.recorder.powerOff();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, Math.max(0, Math.min(ms, 1000)));
      const self = this;
      function done() {
        clearTimeout(timer);
        if (self.wakeWait === done) self.wakeWait = undefined;
        resolve();
      }
      this.wakeWait = done;
    });
  }
}
