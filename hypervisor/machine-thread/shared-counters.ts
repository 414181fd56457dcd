/**
 * SharedCounters: the few values both threads of a node need at once, in one SharedArrayBuffer, so
 * that neither has to ask the other by message (a message to the machine thread waits until it
 * reaches a slice boundary; one to the main thread waits until its event loop is free).
 *
 *   written by the main thread, read by the machine thread at every boundary:
 *     doorbell  bumped (and notified) after every message posted to the machine thread: a machine
 *               thread that sleeps (idle guest, closed gate) wakes at once to read it
 *     gate      1: the guest may run the next slice; 0: it stops at the boundary (flow control, lag
 *               control, a failing disk, a takeover being prepared)
 *     progress  1: log a progress entry promptly (a backup follows the log); 0: none (alone)
 *   written by the machine thread after every slice, read by the main thread whenever it likes:
 *     slice, icount, guestMicros (virtual time), digestsVerified (a replaying machine)
 *
 * Every access goes through Atomics, so a reader never sees a torn 64-bit value.
 */
const i32Slots = 4;
const doorbellSlot = 0;
const gateSlot = 1;
const progressSlot = 2;
const i64Slots = 4;
const sliceSlot = 0;
const icountSlot = 1;
const guestMicrosSlot = 2;
const digestsSlot = 3;

export class SharedCounters {
  static readonly byteLength = i32Slots * 4 + i64Slots * 8;
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;

  constructor(readonly buffer: SharedArrayBuffer = new SharedArrayBuffer(SharedCounters.byteLength)) {
    this.i32 = new Int32Array(buffer, 0, i32Slots);
    this.i64 = new BigInt64Array(buffer, i32Slots * 4, i64Slots);
  }

  // ------------------------------------------------------------ main thread -> machine thread

  /** Wakes a sleeping machine thread (call after posting it a message or changing the gate). */
  ring(): void {
    Atomics.add(this.i32, doorbellSlot, 1);
    Atomics.notify(this.i32, doorbellSlot);
  }

  /** The doorbell's value now: pass it to `sleep` after reading messages, so none is missed. */
  get doorbell(): number {
    return Atomics.load(this.i32, doorbellSlot);
  }

  /** Sleeps until the doorbell moves past `seen` or `timeoutMs` passed (machine thread only). */
  sleep(seen: number, timeoutMs: number): void {
    Atomics.wait(this.i32, doorbellSlot, seen, Math.max(0, timeoutMs));
  }

  set gate(open: boolean) {
    if (Atomics.exchange(this.i32, gateSlot, open ? 1 : 0) !== (open ? 1 : 0) && open) this.ring();
  }

  get gate(): boolean {
    return Atomics.load(this.i32, gateSlot) === 1;
  }

  set progress(on: boolean) {
    if (Atomics.exchange(this.i32, progressSlot, on ? 1 : 0) !== (on ? 1 : 0) && on) this.ring();
  }

  get progress(): boolean {
    return Atomics.load(this.i32, progressSlot) === 1;
  }

  // ------------------------------------------------------------ machine thread -> main thread

  publish(slice: number, icount: number, guestMs: number): void {
    Atomics.store(this.i64, icountSlot, BigInt(icount));
    Atomics.store(this.i64, guestMicrosSlot, BigInt(Math.floor(guestMs * 1000)));
    Atomics.store(this.i64, sliceSlot, BigInt(slice));
  }

  set digestsVerified(n: number) {
    Atomics.store(this.i64, digestsSlot, BigInt(n));
  }

  get digestsVerified(): number {
    return Number(Atomics.load(this.i64, digestsSlot));
  }

  /** Slices the machine has completed (its current boundary). */
  get slice(): number {
    return Number(Atomics.load(this.i64, sliceSlot));
  }

  get icount(): number {
    return Number(Atomics.load(this.i64, icountSlot));
  }

  get guestMs(): number {
    return Number(Atomics.load(this.i64, guestMicrosSlot)) / 1000;
  }
}
