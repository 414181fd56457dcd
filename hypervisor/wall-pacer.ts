/**
 * WallPacer: where guest time would be now if it followed the host's clock exactly since the live
 * run started — the reading a Recorder turns into logged clock entries (`Recorder.boundary`). This is
 * the one place where host time meets guest time; nothing here reaches the guest except through the
 * log, so replays never read it.
 *
 * A run that starts at power-on passes the clock's epoch (`wallEpochMs`, Unix ms of guest time 0):
 * guest time then follows the host calendar, so the time spent building the machine before the first
 * slice is caught up with a logged jump instead of leaving the guest's clock that far behind.
 */
export interface WallPacerOptions {
  wallEpochMs?: number;
  /** Host monotonic clock in ms (injectable for tests). */
  nowMs?: () => number;
  /** Host calendar clock in Unix ms (injectable for tests). */
  unixNowMs?: () => number;
}

export class WallPacer {
  private readonly nowMs: () => number;
  private readonly wallStartMs: number;
  private readonly guestStartMs: number;

  constructor(guestNowMs: number, options: WallPacerOptions = {}) {
    this.nowMs = options.nowMs ?? (() => performance.now());
    this.wallStartMs = this.nowMs();
    const unixNowMs = options.unixNowMs ?? (() => Date.now());
    this.guestStartMs = options.wallEpochMs === undefined ? guestNowMs : Math.max(guestNowMs, unixNowMs() - options.wallEpochMs);
  }

  /** Guest ms the wall clock corresponds to now. */
  guestMs(): number {
    return this.guestStartMs + (this.nowMs() - this.wallStartMs);
  }
}
