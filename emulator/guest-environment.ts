/**
 * The guest environment: every time and randomness source v86 can reach, redirected to values the
 * hypervisor supplies (the virtual clock and a seeded generator), so that the guest sees nothing of
 * the host. Three routes lead into v86 and each is taken over here:
 *   - the wasm imports `microtick` and `get_rand_int` (captured at instantiation: see v86-machine.ts);
 *   - the static `microtick` of v86's internal namespace, which pit.js, rtc.js and acpi.js call;
 *   - the JS globals `Date.now`, `new Date()` and `Math.random`, which rtc.js, vmware.js and the
 *     NIC MAC generator read. These are swapped only while guest code runs (`enter`/`exit`), so
 *     pino, ws and timers outside a slice keep real time.
 */

/** What the hypervisor supplies. Implementations must be deterministic functions of their inputs. */
export interface GuestEnvironment {
  /** Milliseconds of virtual time, strictly increasing per call (v86's microtick). */
  nowMs(): number;
  /** Unix epoch milliseconds the guest's wall clock reads (RTC, `Date`). */
  epochMs(): number;
  /** A float in [0, 1) from the guest's generator (`Math.random`). */
  random(): number;
  /** A 32-bit integer from the guest's generator (RDRAND). */
  randomU32(): number;
}

const RealDate = Date;
const realDateNow = Date.now;
const realMathRandom = Math.random;

/**
 * Swaps the JS globals for the environment's while guest code runs. Not reentrant; `exit` restores
 * exactly what `enter` found.
 */
export class GuestGlobals {
  private saved: { date: DateConstructor; dateNow: () => number; random: () => number } | undefined;
  private readonly virtualDate: DateConstructor;

  constructor(private readonly env: GuestEnvironment) {
    const epochMs = () => env.epochMs();
    // A Date whose "now" is the guest's; every other behaviour is the real Date's.
    const VirtualDate = function (this: unknown, ...args: unknown[]) {
      if (!new.target) return new RealDate(epochMs()).toString();
      return args.length === 0 ? new RealDate(epochMs()) : new (RealDate as any)(...args);
    } as unknown as DateConstructor;
    Object.setPrototypeOf(VirtualDate, RealDate);
    (VirtualDate as any).prototype = RealDate.prototype;
    (VirtualDate as any).now = epochMs;
    this.virtualDate = VirtualDate;
  }

  get active(): boolean {
    return this.saved !== undefined;
  }

  enter(): void {
    if (this.saved) throw new Error("GuestGlobals.enter: already entered");
    this.saved = { date: globalThis.Date, dateNow: Date.now, random: Math.random };
    globalThis.Date = this.virtualDate;
    Math.random = () => this.env.random();
  }

  exit(): void {
    const saved = this.saved;
    if (!saved) throw new Error("GuestGlobals.exit: not entered");
    globalThis.Date = saved.date;
    saved.date.now = saved.dateNow;
    Math.random = saved.random;
    this.saved = undefined;
  }

  run<T>(fn: () => T): T {
    this.enter();
    try {
      return fn();
    } finally {
      this.exit();
    }
  }
}

/** The host's own sources, as they were when this module loaded (for the code that must use them). */
export const hostSources = { Date: RealDate, dateNow: realDateNow, random: realMathRandom };
