/**
 * The machine thread of a node (a worker_threads Worker): it owns v86, the slice driver and the
 * recorder (primary) or replayer (backup) and runs slices back to back. It never returns to its
 * event loop once the machine is built: messages from the main thread are taken synchronously at
 * every slice boundary (`receiveMessageOnPort`), and while the guest idles or the gate is closed the
 * thread sleeps on the shared doorbell, which the main thread rings after every message. So input,
 * disk completions and log entries reach the guest at the next boundary, never at the end of a batch.
 *
 * What it sends back is batched: at once when a slice produced output or disk requests (the output
 * rule waits on them), before it sleeps, and otherwise every `flushIntervalMs`.
 *
 * Host time is read here only outside the guest's path: the WallPacer's reading becomes logged clock
 * entries (through the Recorder), and the batching and progress intervals decide only when entries
 * travel, never what the guest sees.
 *
 * A primary with a backup (the shared `progress` flag) logs a progress entry after every slice with
 * output (so the output rule can be satisfied at once), before sleeping, and at least every
 * `progressIntervalMs` while busy (so the backup, which may only execute through the last progress
 * entry, keeps up).
 */
import { getPriority, setPriority } from "node:os";
import { receiveMessageOnPort, parentPort, workerData, type MessagePort } from "node:worker_threads";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { loadMachine, type MachineConfig } from "../../emulator/machine-config.js";
import { decodeCheckpoint, sessionFromCheckpoint } from "../checkpoint.js";
import type { LogEntry } from "../event-log/log-entry.js";
import { MachineSession } from "../machine-session.js";
import { checkpointSliceMinFor, Recorder } from "../recorder.js";
import { Replayer } from "../replayer.js";
import { WallPacer } from "../wall-pacer.js";
import type { FromMachine, MachineBatch, MachineInit, ToMachine } from "./machine-protocol.js";
import { SharedCounters } from "./shared-counters.js";
import { replay } from "./replay-role.js";

/** How much lower (nice) the machine thread runs than its main thread (Linux). */
const machineThreadNice = 5;
/** Host ms between batches sent to the main thread while nothing urgent happened. */
const flushIntervalMs = 2;
/** Host ms between progress entries while the guest is busy and a backup follows. */
const progressIntervalMs = 5;
/** Host ms a replaying backup runs before it publishes what it executed. */
const followBatchMs = 2;
/** Entries a backup keeps after executing them before the consumed head of its queue is dropped. */
const consumedEntriesMax = 4096;

const { port, shared, init } = workerData as { port: MessagePort; shared: SharedArrayBuffer; init: MachineInit };
const counters = new SharedCounters(shared);

function post(m: FromMachine, transfer: ArrayBuffer[] = []): void {
  parentPort!.postMessage(m, transfer);
}

/** What goes to the main thread in the next batch. */
export class Outbox {
  private batch: MachineBatch = this.empty();
  private transfer = new Set<ArrayBuffer>();
  private lastFlushMs = performance.now();
  private any = false;

  private empty(): MachineBatch {
    return { type: "batch", entries: [], output: [], disk: [], net: [], slice: 0, atWallMs: 0 };
  }

  entry(e: LogEntry): void {
    this.batch.entries.push(e);
    // disk data came from the main thread and is not needed here once applied: hand it back
    if (e.kind === "disk-read" && e.data.byteOffset === 0 && e.data.byteLength === e.data.buffer.byteLength) this.transfer.add(e.data.buffer as ArrayBuffer);
    this.any = true;
  }

  /** What a slice produced; `guestMs` (the time at its end) goes with its network frames. */
  slice(slice: number, serial: Uint8Array | null, requests: MachineBatch["disk"][number]["requests"], net: Uint8Array[] | null = null, guestMs = 0): void {
    if (net) this.net(slice, guestMs, "out", net);
    if (serial) {
      this.batch.output.push({ slice, data: serial });
      this.any = true;
    }
    if (requests.length > 0) {
      this.batch.disk.push({ slice, requests });
      this.any = true;
    }
  }

  net(slice: number, guestMs: number, dir: "in" | "out", frames: Uint8Array[]): void {
    this.batch.net.push({ slice, guestMs, dir, frames });
    for (const f of frames) if (f.byteOffset === 0 && f.byteLength === f.buffer.byteLength) this.transfer.add(f.buffer as ArrayBuffer);
    this.any = true;
  }

  get due(): boolean {
    return this.any && performance.now() - this.lastFlushMs >= flushIntervalMs;
  }

  flush(slice: number, logOffset?: number): void {
    this.lastFlushMs = performance.now();
    if (!this.any && logOffset === undefined) return;
    const b = this.batch;
    b.slice = slice;
    if (logOffset !== undefined) b.logOffset = logOffset;
    b.atWallMs = performance.timeOrigin + this.lastFlushMs;
    post(b, [...this.transfer]);
    this.batch = this.empty();
    this.transfer.clear();
    this.any = false;
  }
}

const outbox = new Outbox();

/**
 * The machine thread takes every cycle the guest can use, but the node's main thread must answer at
 * once: the output rule waits on its log frames and acks. On Linux a thread's nice value is its own,
 * so this thread asks for a lower priority than its main thread and the scheduler lets the main
 * thread in as soon as it wakes. Elsewhere (or if refused) nothing changes.
 */
function lowerPriority(): void {
  if (process.platform !== "linux" || init.nice === 0) return;
  try {
    setPriority(0, Math.min(19, getPriority(0) + (init.nice ?? machineThreadNice)));
  } catch {
    // not permitted: run at the main thread's priority
  }
}

/** Reads every message waiting, synchronously. */
function drain(handle: (m: ToMachine) => void): void {
  for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) handle(m.message as ToMachine);
}

let machineKind: MachineConfig["kind"] = "linux";

async function buildSession(): Promise<MachineSession> {
  const loaded = loadMachine(init.image, init.load);
  for (const [role, sha256] of Object.entries(init.sha256s ?? {})) {
    const here = loaded.config.files[role as keyof typeof loaded.config.files]?.sha256;
    if (here !== sha256) throw new LockstepError(ErrorCode.logMismatch, `The ${role} file of "${loaded.config.name}" has sha256 ${here ?? "none"} here, but the log header names ${sha256}`, "it changed since the machine was started: give every node the same file");
  }
  machineKind = loaded.config.kind;
  const options = { loaded, ...(init.diskBytes !== undefined ? { diskBytes: init.diskBytes } : {}), clock: init.clock, ...(init.jit !== undefined ? { jit: init.jit } : {}) };
  if (!init.checkpoint) return MachineSession.open(options);
  const c = await decodeCheckpoint(init.checkpoint.bytes, loaded.config.memoryMiB);
  if (c.driver.slice !== init.checkpoint.slice) throw new LockstepError(ErrorCode.checkpointCorrupt, `the checkpoint is at slice ${c.driver.slice}, the primary said ${init.checkpoint.slice}`);
  return sessionFromCheckpoint(options, c);
}

/** Records as a live primary until told to stop. */
function record(session: MachineSession, wallEpochMs: number | undefined): void {
  const driver = session.driver;
  const recorder = new Recorder(driver, { digestEverySlices: init.digestEverySlices, sink: (e) => outbox.entry(e), checkpointSliceMin: checkpointSliceMinFor({ kind: machineKind }) });
  const pacer = new WallPacer(driver.clock.peekMs(), wallEpochMs !== undefined ? { wallEpochMs } : {});
  let stopping = false;
  let checkpointWanted = false;
  let progressSlice = driver.slice;
  let progressAtMs = performance.now();
  const everyMs = init.progressEveryMs ?? progressIntervalMs;
  const progress = () => {
    if (driver.slice === progressSlice || !(counters.progress || init.progressEveryMs !== undefined)) return;
    recorder.progress();
    progressSlice = driver.slice;
    progressAtMs = performance.now();
  };
  const handle = (m: ToMachine) => {
    switch (m.type) {
      case "input":
        if (!recorder.queueSerial(m.data, m.source) && m.source) post({ type: "input-refused", source: m.source });
        break;
      case "keys":
        if (!recorder.queueKeys(m.data, m.source) && m.source) post({ type: "input-refused", source: m.source });
        break;
      case "disk-read":
        recorder.queueDiskRead(m.id, m.data);
        break;
      case "disk-write":
        recorder.queueDiskWrite(m.id);
        break;
      case "net":
        for (const f of m.frames) recorder.queueNet(f);
        break;
      case "checkpoint":
        checkpointWanted = true;
        break;
      case "stop":
        stopping = true;
        break;
      case "screen":
      case "memory":
      case "graphics":
        answerView(m.type, driver);
        break;
      case "entries":
      case "go-live":
        break; // not a backup any more
    }
  };
  for (;;) {
    const bell = counters.doorbell;
    drain(handle);
    if (stopping) break;
    if (checkpointWanted) {
      const t0 = performance.now();
      const checkpoint = recorder.checkpoint(); // undefined while disk I/O is in flight: a later boundary
      if (checkpoint) {
        checkpointWanted = false;
        outbox.flush(driver.slice); // the checkpoint's control entry goes first
        const m = checkpoint.machine;
        const transfer = [m.memory, m.devices].filter((a) => a.byteOffset === 0 && a.byteLength === a.buffer.byteLength).map((a) => a.buffer as ArrayBuffer);
        post({ type: "checkpoint", checkpoint, pauseMs: performance.now() - t0 }, transfer);
      }
    }
    if (!counters.gate) {
      progress();
      outbox.flush(driver.slice);
      counters.sleep(bell, 50);
      continue;
    }
    // unpaced, an idle guest skips time at once; waiting for its disk it would skip far ahead while
    // the completion crosses from the main thread: wait for the completion instead
    const waitingForDisk = !init.paced && driver.halted && (session.machine.disk?.inFlight ?? 0) > 0 && !recorder.hasPendingInput;
    const decision = waitingForDisk ? { action: "wait" as const, waitMs: 50 } : recorder.boundary(init.paced ? pacer.guestMs() : undefined);
    if (decision.action === "wait") {
      progress();
      outbox.flush(driver.slice);
      counters.sleep(bell, Math.min(decision.waitMs, 1000));
      continue;
    }
    const result = driver.runSlice();
    counters.publish(driver.slice, driver.icount, driver.clock.peekMs());
    outbox.slice(driver.slice, result.serial, result.diskRequests, result.net, driver.clock.peekMs());
    const urgent = result.serial !== null || result.diskRequests.length > 0 || result.net !== null;
    // output waits for the backup's ack of the log through this slice: say at once that it is complete
    if ((urgent && counters.progress) || performance.now() - progressAtMs >= everyMs) progress();
    if (urgent || outbox.due) outbox.flush(driver.slice);
  }
  recorder.powerOff();
  outbox.flush(driver.slice);
  post({ type: "stopped" });
}

/** Follows the log the main thread passes on, as far as it is complete; records after a takeover. */
function follow(session: MachineSession): void {
  const driver = session.driver;
  const queue: LogEntry[] = [];
  let next = 0;
  let complete = driver.slice;
  let stopping = false;
  let goLive = false;
  const replayer = new Replayer(driver, () => (next < queue.length ? queue[next++] : undefined), {
    onSlice: (r, slice) => outbox.slice(slice, r.serial, [], r.net, driver.clock.peekMs()),
  });
  const handle = (m: ToMachine) => {
    switch (m.type) {
      case "entries":
        for (const e of m.entries) {
          queue.push(e);
          if (e.kind === "progress" && e.slice > complete) complete = e.slice;
        }
        break;
      case "go-live":
        goLive = true;
        break;
      case "stop":
        stopping = true;
        break;
      case "screen":
      case "memory":
      case "graphics":
        answerView(m.type, driver);
        break;
      default:
        break; // primary-only messages sent before the takeover finished: nothing to do
    }
  };
  let reported = driver.slice;
  for (;;) {
    const bell = counters.doorbell;
    drain(handle);
    if (stopping) {
      post({ type: "stopped" });
      return;
    }
    if (goLive) {
      // takeover: everything received is executed (VMware FT: the backup replays its whole log)
      const last = queue.at(-1)?.slice ?? driver.slice;
      if (replayer.follow(last, Number.MAX_SAFE_INTEGER) === "power-off") throw new Error("the primary powered the guest off");
      counters.publish(driver.slice, driver.icount, driver.clock.peekMs());
      outbox.flush(driver.slice);
      post({ type: "took-over", slice: driver.slice, pending: session.machine.disk?.pending() ?? [] });
      return record(session, undefined);
    }
    let r: "power-off" | "caught-up" | undefined;
    const t0 = performance.now();
    do r = replayer.follow(complete, 1);
    while (r === undefined && performance.now() - t0 < followBatchMs);
    counters.publish(driver.slice, driver.icount, driver.clock.peekMs());
    counters.digestsVerified = replayer.digestsVerified;
    if (next > consumedEntriesMax) {
      queue.splice(0, next);
      next = 0;
    }
    if (r === "power-off") throw new Error("the primary powered the guest off");
    outbox.flush(driver.slice);
    if (r === "caught-up") {
      if (driver.slice !== reported) {
        reported = driver.slice;
        post({ type: "executed", slice: reported });
      }
      counters.sleep(bell, 50);
    }
  }
}

async function main(): Promise<void> {
  lowerPriority();
  const session = await buildSession();
  counters.publish(session.driver.slice, session.driver.icount, session.driver.clock.peekMs());
  post({ type: "ready", slice: session.driver.slice });
  try {
    if (init.role === "primary") record(session, init.wallEpochMs);
    else if (init.role === "backup") follow(session);
    else replay(session, init.replay!, { outbox, post, counters });
  } finally {
    session.close();
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    if (e instanceof LockstepError) {
      post({ type: "failed", reason: e.toLine(), error: { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}), ...(e.details ? { details: e.details } : {}) } });
    } else post({ type: "failed", reason: e instanceof Error ? e.message : String(e) });
  },
);

function threadMemory(): { heapUsed: number; external: number; arrayBuffers: number } {
  const m = process.memoryUsage();
  const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
  return { heapUsed: mib(m.heapUsed), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers) };
}

/** A view of the machine (its screen, or this thread's memory), asked for by either role: it changes nothing. */
function answerView(what: "screen" | "memory" | "graphics", driver: { machine: Pick<import("../../emulator/v86-machine.js").V86Machine, "textScreen" | "graphicsScreen"> }): void {
  if (what === "screen") post({ type: "screen", screen: driver.machine.textScreen() });
  else if (what === "graphics") {
    const g = driver.machine.graphicsScreen() ?? null;
    post({ type: "graphics", graphics: g }, g ? [g.rgba.buffer as ArrayBuffer] : []);
  } else post({ type: "memory", usage: threadMemory() });
}
