/**
 * MachineThread: the main thread's handle on a machine running in its own worker thread (see
 * machine-worker.ts). Sends it inputs, disk completions, log entries and requests; hands what it
 * reports to `MachineEvents`; reads its progress counters and sets its gate through shared memory,
 * without a message round trip.
 *
 * The worker is a separate JS realm, so its globals (`Date`, `Math.random`, v86's namespace static)
 * are its own: nothing the main thread does (timers, sockets, logging) can reach the guest's time.
 */
import type { TextScreen } from "../../emulator/text-screen.js";
import type { GraphicsScreen } from "../../emulator/vga-graphics.js";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { packageRoot } from "../../emulator/package-root.js";
import type { SessionCheckpoint } from "../checkpoint.js";
import type { LogEntry } from "../event-log/log-entry.js";
import { LockstepError, type ErrorCode } from "../../emulator/lockstep-error.js";
import type { ReplayEnd, ReplaySummary } from "../replayer.js";
import type { FromMachine, InputSource, MachineBatch, MachineError, MachineInit, ThreadMemory, ToMachine } from "./machine-protocol.js";
import { SharedCounters } from "./shared-counters.js";

/** What the thread answers when asked for a view of the machine (see the protocol). */
interface MachineViews {
  screen: TextScreen;
  memory: ThreadMemory;
  graphics: GraphicsScreen | null;
}

export interface MachineEvents {
  batch(b: MachineBatch): void;
  executed?(slice: number): void;
  checkpoint?(c: SessionCheckpoint, pauseMs: number): void;
  tookOver?(slice: number, pending: DiskRequest[]): void;
  inputRefused?(source: InputSource): void;
  replayed?(r: { end: ReplayEnd; summary: ReplaySummary; truncatedAt: number | null; guestMs: number }): void;
  /**
   * The machine stopped by itself (divergence, power-off, an error); it runs no more. `error` is the
   * operating error with its stable code, when it was one.
   */
  failed(reason: string, error?: LockstepError): void;
}

/** An operating error from the machine thread, rebuilt with its code, hint and details. */
function rebuild(e: MachineError): LockstepError {
  return new LockstepError(e.code as ErrorCode, e.message, e.hint, e.details);
}

/** The compiled worker script (under vitest this module runs from source, the worker from dist/). */
function workerScript(): string {
  const here = fileURLToPath(import.meta.url);
  if (here.endsWith(".js")) return join(here, "..", "machine-worker.js");
  const compiled = join(packageRoot(), "dist", "hypervisor", "machine-thread", "machine-worker.js");
  if (!existsSync(compiled)) throw new Error(`${compiled} is missing: run npm run build`);
  return compiled;
}

export class MachineThread {
  readonly counters = new SharedCounters();
  private readonly worker: Worker;
  private readonly port;
  private stopped: Promise<void>;
  private done = false;

  private constructor(init: MachineInit, private readonly events: MachineEvents, ready: (slice: number) => void, fail: (e: Error) => void) {
    const channel = new MessageChannel();
    this.port = channel.port1;
    this.worker = new Worker(workerScript(), {
      workerData: { port: channel.port2, shared: this.counters.buffer, init },
      transferList: [channel.port2],
      stdout: false,
      stderr: false,
    });
    let started = false;
    this.stopped = new Promise<void>((resolve) => {
      this.worker.on("message", (m: FromMachine) => {
        if (m.type === "ready") {
          started = true;
          ready(m.slice);
          return;
        }
        if (m.type === "stopped") {
          this.done = true;
          resolve();
          return;
        }
        if (m.type === "failed") {
          this.done = true;
          if (!started) fail(m.error ? rebuild(m.error) : new Error(m.reason));
          else this.events.failed(m.reason, m.error ? rebuild(m.error) : undefined);
          resolve();
          return;
        }
        this.dispatch(m);
      });
      this.worker.on("error", (e) => {
        this.done = true;
        if (!started) fail(e);
        else this.events.failed(`machine thread crashed: ${e.message}`);
        resolve();
      });
      this.worker.on("exit", () => {
        if (!this.done && started) this.events.failed("machine thread exited");
        this.done = true;
        if (!started) fail(new Error("machine thread exited before the machine was built"));
        resolve();
      });
    });
  }

  /** Builds the machine in a new worker; resolves once it sits at its first boundary. */
  static start(init: MachineInit, events: MachineEvents): Promise<MachineThread> {
    return new Promise((resolve, reject) => {
      const t: MachineThread = new MachineThread(init, events, () => resolve(t), (e) => {
        void t.worker.terminate();
        reject(e);
      });
    });
  }

  /** Resolves once the thread has ended (stopped, failed or crashed). */
  get ended(): Promise<void> {
    return this.stopped;
  }

  private dispatch(m: Exclude<FromMachine, { type: "ready" | "stopped" | "failed" }>): void {
    const e = this.events;
    switch (m.type) {
      case "batch":
        e.batch(m);
        break;
      case "executed":
        e.executed?.(m.slice);
        break;
      case "checkpoint":
        e.checkpoint?.(m.checkpoint, m.pauseMs);
        break;
      case "took-over":
        e.tookOver?.(m.slice, m.pending);
        break;
      case "input-refused":
        e.inputRefused?.(m.source);
        break;
      case "replayed":
        this.done = true;
        e.replayed?.(m);
        break;
      case "screen":
        this.answerView("screen", m.screen);
        break;
      case "memory":
        this.answerView("memory", m.usage);
        break;
      case "graphics":
        this.answerView("graphics", m.graphics);
        break;
    }
  }

  /** Who waits for which view of the machine (one request in flight per kind, shared). */
  private readonly viewWaiters: { [K in keyof MachineViews]: Array<(v: MachineViews[K] | undefined) => void> } = { screen: [], memory: [], graphics: [] };

  private answerView<K extends keyof MachineViews>(kind: K, value: MachineViews[K]): void {
    for (const w of this.viewWaiters[kind].splice(0)) w(value);
  }

  /** A view of the machine at the next boundary (undefined if the thread ends first): it changes nothing. */
  private view<K extends keyof MachineViews>(kind: K): Promise<MachineViews[K] | undefined> {
    if (this.done) return Promise.resolve(undefined);
    this.answerWaitersAtEnd();
    return new Promise((resolve) => {
      if (this.viewWaiters[kind].push(resolve) === 1) this.send({ type: kind });
    });
  }

  /** The machine thread's own memory at the next boundary (undefined if the thread ends first). */
  memory(): Promise<ThreadMemory | undefined> {
    return this.view("memory");
  }

  private waitersAnsweredAtEnd = false;

  /** When the thread ends, whoever still waits for a view gets undefined (one handler, not one per call). */
  private answerWaitersAtEnd(): void {
    if (this.waitersAnsweredAtEnd) return;
    this.waitersAnsweredAtEnd = true;
    void this.stopped.then(() => {
      for (const list of Object.values(this.viewWaiters)) for (const w of list.splice(0)) (w as (v: undefined) => void)(undefined);
    });
  }

  /** The VGA text screen at the next boundary (undefined if the thread ends first). */
  screen(): Promise<TextScreen | undefined> {
    return this.view("screen");
  }

  /** The screen's pixels in a VBE graphics mode at the next boundary (null: not in one; undefined: the thread ended). */
  graphics(): Promise<GraphicsScreen | null | undefined> {
    return this.view("graphics");
  }

  private send(m: ToMachine, transfer: ArrayBuffer[] = []): void {
    if (this.done) return;
    this.port.postMessage(m, transfer);
    this.counters.ring();
  }

  get slice(): number {
    return this.counters.slice;
  }

  get icount(): number {
    return this.counters.icount;
  }

  /** Flow and lag control: false stops the guest at the next boundary. */
  setGate(open: boolean): void {
    this.counters.gate = open;
  }

  /** A backup follows: log progress promptly. */
  setProgress(on: boolean): void {
    this.counters.progress = on;
  }

  /** Console bytes for the next boundary; `source` tags a console client's input (see the protocol). */
  input(data: Uint8Array, source?: InputSource): void {
    this.send({ type: "input", data, ...(source ? { source } : {}) });
  }

  /** PS/2 scancodes for the next boundary. */
  keys(data: Uint8Array, source?: InputSource): void {
    this.send({ type: "keys", data, ...(source ? { source } : {}) });
  }

  /** Ethernet frames from the host link for the guest's NIC (primary). The frames are transferred. */
  net(frames: Uint8Array[]): void {
    if (frames.length === 0) return;
    const owned = frames.filter((f) => f.byteOffset === 0 && f.byteLength === f.buffer.byteLength).map((f) => f.buffer as ArrayBuffer);
    this.send({ type: "net", frames }, owned.length === frames.length ? owned : []);
  }

  diskRead(id: number, data: Uint8Array): void {
    const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength;
    this.send({ type: "disk-read", id, data }, own ? [data.buffer as ArrayBuffer] : []);
  }

  diskWrite(id: number): void {
    this.send({ type: "disk-write", id });
  }

  entries(entries: LogEntry[]): void {
    if (entries.length > 0) this.send({ type: "entries", entries });
  }

  requestCheckpoint(): void {
    this.send({ type: "checkpoint" });
  }

  goLive(): void {
    this.send({ type: "go-live" });
  }

  /** Stops the machine (a primary logs power-off first) and ends the thread. */
  async stop(timeoutMs = 5000): Promise<void> {
    this.send({ type: "stop" });
    const timer = new Promise<void>((r) => setTimeout(r, timeoutMs).unref());
    await Promise.race([this.stopped, timer]);
    this.done = true;
    await this.worker.terminate();
  }

  /** Ends the thread at once (a halted node): no power-off is logged. */
  async kill(): Promise<void> {
    this.done = true;
    await this.worker.terminate();
  }
}
