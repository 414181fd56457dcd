/**
 * LockstepNode: the runtime that wires a sans-IO core (PrimaryCore or BackupCore) to a real machine,
 * real sockets, the arbiter and timers. It is the imperative shell: every decision is the core's,
 * every effect is carried out here.
 *
 *   primary: LiveLoop + Recorder run the guest paced to wall time; every entry goes to the core and
 *            on to the backup; serial output waits in the ConsoleStream until the core's output rule
 *            releases it to console clients.
 *   backup:  entries from the primary feed a Replayer that follows the log up to the slice through
 *            which it is complete; output is computed and kept, not released. On the primary's
 *            failure and a won epoch it replays everything received and becomes a primary (with its
 *            whole log, so a fresh backup can join it from power-on).
 *
 * The machine runs in its own thread (MachineThread): this thread only carries messages, so log
 * frames, acks and heartbeats are served at once, never after a batch of slices.
 */
import { randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Logger } from "pino";
import { Gauge, Registry } from "prom-client";
import { WebSocket } from "ws";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { writeDiskFile } from "../../emulator/disk-file.js";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { bundledImageNames, loadMachine, type LoadedMachine } from "../../emulator/machine-config.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { openDiskBackend, type DiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { BackendDiskPort } from "../../hypervisor/disk/disk-port.js";
import { buildHeader, checkHeader } from "../../hypervisor/log-header.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { encodeCheckpoint, type SessionCheckpoint } from "../../hypervisor/checkpoint.js";
import { MachineThread } from "../../hypervisor/machine-thread/machine-thread.js";
import type { MachineBatch, MachineInit } from "../../hypervisor/machine-thread/machine-protocol.js";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import type { Arbiter } from "../arbiter/arbiter.js";
import { BackupCore, type BackupEffect } from "../core/backup-core.js";
import { ConsoleStream } from "../core/console-stream.js";
import { defaultPrimaryConfig, PrimaryCore, type CoreEffect } from "../core/primary-core.js";
import { NodeServer } from "../transport/node-server.js";
import { LatencySamples } from "../core/latency-samples.js";
import { WireError } from "../wire/envelope.js";
import { decodeConsoleClientMessage, encodeConsoleMessage, type ConsoleServerMessage } from "../wire/console-messages.js";
import { checkpointPartBytes, decodePeerMessage, encodePeerMessage, type PeerMessage } from "../wire/peer-messages.js";

export interface NodeOptions {
  nodeId: string;
  host: string;
  port: number;
  token: string;
  arbiter: Arbiter;
  logger: Logger;
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  /** Primary: what to boot. */
  image?: string;
  memoryMiB?: number;
  /**
   * The shared disk: a file path or an NBD URL. Primary: default `<sharedDir>/disk-<image>.img`, made
   * fresh when missing. Backup: opened only at takeover; default: the location the primary logged.
   */
  disk?: string;
  /** The directory both hosts share (default location of the disk). */
  sharedDir?: string;
  /** Backup: join from a checkpoint of the running primary instead of replaying from power-on. */
  join?: boolean;
  /** Backup: the primary's address (ws://host:port) and, if the log's machine is not bundled, its config. */
  connect?: string;
  imageOverride?: string;
}

interface ConsoleClient {
  clientId: string | undefined;
  offset: number;
}

/** Console messages queued per client at most before it is dropped as too slow. */
const consoleBufferedBytesMax = 8 * 2 ** 20;
const tickIntervalMs = 5;
/** Console input bytes sent to the machine and not yet applied, at most (past it the client resends). */
const inputInFlightBytesMax = 64 * 1024;

export class LockstepNode extends EventEmitter {
  role: "starting" | "primary" | "backup" | "halted" = "starting";
  epoch = 0;
  haltReason: string | undefined;
  private server: NodeServer;
  private machine: MachineThread | undefined;
  private header: LogHeader | undefined;
  readonly stream = new ConsoleStream();
  private primary: PrimaryCore | undefined;
  private backup: BackupCore | undefined;
  private preparing: Promise<void> | undefined;
  /** Backup: entries of the BackupCore's list already passed to the machine. */
  private entriesPassed = 0;
  private inputInFlightBytes = 0;
  private peer: WebSocket | undefined;
  private consoles = new Map<WebSocket, ConsoleClient>();
  private queuedInput = new Map<string, number>();
  private ticker: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private readonly log: Logger;
  private diskBackend: DiskBackend | undefined;
  private checkpointWantedAtMs: number | undefined;
  private incoming: { first: number; slice: number; console: number; inputs: Array<[string, number]>; parts: Array<Uint8Array | undefined> } | undefined;
  /** Joins served from a checkpoint: primary pause (capture) and bytes sent. */
  readonly joins: Array<{ pauseMs: number; rawBytes: number; bytes: number; sendMs: number }> = [];
  private diskPort: BackendDiskPort | undefined;
  private readonly registry = new Registry();
  readonly startedAtMs = performance.now();
  /** Output rule delay: output produced -> released (ms), while protected. */
  readonly outputDelay = new LatencySamples();
  /** Backup lag: a slice run by the primary -> the backup reported it executed (ms). */
  readonly backupLag = new LatencySamples();
  private outputPending: Array<{ end: number; atMs: number; protected: boolean }> = [];
  private sliceTimes: Array<{ slice: number; atMs: number }> = [];
  peerBytesSent = 0;
  peerBytesReceived = 0;
  liveAtMs: number | undefined;

  private constructor(readonly options: NodeOptions) {
    super();
    this.log = options.logger.child({ component: "node", nodeId: options.nodeId });
    this.server = new NodeServer({
      host: options.host,
      port: options.port,
      token: options.token,
      status: () => this.status(),
      metrics: () => this.registry.metrics(),
      onPeer: (ws, req) => this.acceptPeer(ws, req),
      onConsole: (ws) => this.acceptConsole(ws),
      onRejected: (reason, remote) => this.log.warn({ remote }, `connection refused: ${reason}`),
    });
    this.defineMetrics();
  }

  private defineMetrics(): void {
    const node = this;
    const gauge = (name: string, help: string, value: () => number | undefined) =>
      new Gauge({
        name,
        help,
        registers: [this.registry],
        collect() {
          const v = value();
          if (v !== undefined) this.set(v);
        },
      });
    gauge("lockstep_epoch", "Current epoch", () => node.currentEpoch);
    gauge("lockstep_is_primary", "1 when this node is the live primary", () => (node.role === "primary" ? 1 : 0));
    gauge("lockstep_slice", "Slices executed", () => node.machine?.slice);
    gauge("lockstep_instructions", "Instructions executed", () => node.machine?.icount);
    gauge("lockstep_backup_lag_slices", "Primary slices not yet executed by the backup", () => node.primary?.lagSlices(node.machine?.slice ?? 0));
    gauge("lockstep_log_entries", "Entries in the log", () => node.primary?.logLength ?? node.backup?.entries.length);
    gauge("lockstep_console_bytes", "Console output bytes produced", () => node.stream.end);
    gauge("lockstep_console_released_bytes", "Console output bytes released", () => node.stream.released);
  }

  get currentEpoch(): number {
    return this.primary?.epoch ?? this.backup?.epoch ?? this.epoch;
  }

  get port(): number {
    return this.server.port;
  }

  status(): Record<string, unknown> {
    const m = this.machine;
    return {
      nodeId: this.options.nodeId,
      role: this.role,
      epoch: this.currentEpoch,
      state: this.primary?.state ?? this.backup?.state ?? this.role,
      protected: this.primary?.state === "protected",
      backup: this.primary?.backupId ?? null,
      slice: m?.slice ?? 0,
      instructions: m?.icount ?? 0,
      guestMs: Math.round(m?.counters.guestMs ?? 0),
      lagSlices: this.primary && m ? (this.primary.lagSlices(m.slice) ?? null) : null,
      logEntries: this.primary?.logLength ?? this.backup?.entries.length ?? 0,
      logComplete: this.backup?.complete ?? null,
      digestsVerified: this.role === "backup" ? (m?.counters.digestsVerified ?? 0) : null,
      consoleClients: this.consoles.size,
      outputBytes: this.stream.end,
      releasedBytes: this.stream.released,
      haltReason: this.haltReason ?? null,
      outputDelayMs: this.outputDelay.summary(),
      backupLagMs: this.backupLag.summary(),
      joinsServed: this.joins.length,
      lastJoin: this.joins.at(-1) ?? null,
      disk: this.diskPort ? { location: this.diskBackend!.description, outstanding: this.diskPort.scheduler.outstanding, heldWrites: this.diskPort.scheduler.heldWrites, stalled: this.diskPort.scheduler.stalled ?? null, ...this.diskPort.scheduler.totals } : null,
      peerBytesSent: this.peerBytesSent,
      peerBytesReceived: this.peerBytesReceived,
      uptimeMs: Math.round(performance.now() - this.startedAtMs),
    };
  }

  // ---------------------------------------------------------------- starting

  static async startPrimary(options: NodeOptions): Promise<LockstepNode> {
    const node = new LockstepNode(options);
    const current = await options.arbiter.current();
    if (current === undefined) throw new LockstepError(ErrorCode.usage, "The arbiter cannot be reached", "check --shared-dir");
    const epoch = current + 1;
    if (!(await options.arbiter.claim(epoch, options.nodeId))) {
      throw new LockstepError(ErrorCode.usage, `Epoch ${epoch} was claimed by another node`, "another primary is starting in the same shared directory");
    }
    const loaded = loadMachine(options.image ?? "linux", options.memoryMiB !== undefined ? { memoryMiB: options.memoryMiB } : {});
    let location = options.disk;
    if (!location && loaded.config.disk && options.sharedDir) {
      location = resolve(options.sharedDir, `disk-${loaded.config.name}.img`);
      if (!existsSync(location)) {
        writeDiskFile(location, makeBlankDisk(loaded.config.disk));
        node.log.info({ disk: location, sizeMiB: loaded.config.disk.sizeMiB }, "made a fresh shared disk");
      }
    } else if (location && !/^nbd/.test(location)) location = resolve(location);
    if (location) node.diskBackend = await openDiskBackend(location);
    const clock = defaultClockParams(Date.now(), randomInt(2 ** 31));
    const disk = node.diskBackend ? { bytes: node.diskBackend.bytes, location } : undefined;
    node.header = buildHeader({ loaded, disk, clock, digestEverySlices: 1000, recordedAt: new Date() });
    const init: MachineInit = {
      role: "primary",
      image: options.image ?? "linux",
      load: options.memoryMiB !== undefined ? { memoryMiB: options.memoryMiB } : {},
      ...(disk ? { diskBytes: disk.bytes } : {}),
      clock,
      // at power-on the guest's clock starts at the host's time
      wallEpochMs: clock.epochMs,
      digestEverySlices: 1000,
      paced: true,
    };
    node.machine = await MachineThread.start(init, node.primaryEvents());
    await node.server.listen();
    node.becomePrimary(epoch, []);
    node.log.info({ epoch, port: node.port, image: loaded.config.name }, "primary started");
    return node;
  }

  static async startBackup(options: NodeOptions): Promise<LockstepNode> {
    const node = new LockstepNode(options);
    node.role = "backup";
    node.backup = new BackupCore({
      nodeId: options.nodeId,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      failureTimeoutMs: options.failureTimeoutMs,
      logEntriesMax: defaultPrimaryConfig.logEntriesMax,
      ...(options.join ? { join: true } : {}),
    });
    await node.server.listen();
    node.connectToPrimary();
    node.ticker = setInterval(() => node.tick(), tickIntervalMs);
    node.log.info({ port: node.port, primary: options.connect }, "backup started");
    return node;
  }

  // ---------------------------------------------------------------- primary

  private becomePrimary(epoch: number, history: LogEntry[], logFromPowerOn = true, reissue: DiskRequest[] = []): void {
    const machine = this.machine!;
    this.role = "primary";
    this.epoch = epoch;
    this.backup = undefined;
    const core = new PrimaryCore({ ...defaultPrimaryConfig, nodeId: this.options.nodeId, heartbeatIntervalMs: this.options.heartbeatIntervalMs, failureTimeoutMs: this.options.failureTimeoutMs }, epoch, this.header!, history, logFromPowerOn);
    core.noteSlice(machine.slice);
    this.primary = core;
    machine.setEvents(this.primaryEvents());
    const port = this.diskBackend
      ? new BackendDiskPort(
          this.diskBackend,
          { queueDiskRead: (id, data) => machine.diskRead(id, data), queueDiskWrite: (id) => machine.diskWrite(id) },
          {
            holdWrites: true, // released by the output rule, see release()
            wake: () => {},
            onStall: (reason) => {
              if (reason) this.log.error({ reason, disk: this.diskBackend!.description }, "disk backend failing: the guest is paused until it works again");
              else this.log.info({ disk: this.diskBackend!.description }, "disk backend works again: the guest goes on");
              this.updateGate();
            },
          },
        )
      : undefined;
    this.diskPort = port;
    if (port && reissue.length > 0) {
      // takeover: every request the old primary may not have completed is issued again
      this.log.warn({ requests: reissue.length, ids: reissue.map((r) => r.id) }, "re-issuing disk requests that were not completed");
      port.submit(reissue, machine.slice);
    }
    this.ticker ??= setInterval(() => this.tick(), tickIntervalMs);
    this.updateGate();
    this.release();
    this.emit("live", epoch);
  }

  /** What the machine thread reports while this node is the primary. */
  private primaryEvents() {
    return {
      batch: (b: MachineBatch) => this.onPrimaryBatch(b),
      checkpoint: (c: SessionCheckpoint, pauseMs: number) => this.serveCheckpoint(c, pauseMs),
      inputRefused: (source: { client: string; seq: number }) => {
        // the client resends what was not acknowledged
        if ((this.queuedInput.get(source.client) ?? 0) >= source.seq) this.queuedInput.set(source.client, source.seq - 1);
      },
      failed: (reason: string) => this.halt(`machine stopped: ${reason}`),
    };
  }

  /** Flow and lag control, and a failing disk, stop the guest at a boundary; a backup wants progress. */
  private updateGate(): void {
    const m = this.machine;
    const core = this.primary;
    if (!m || !core || this.role !== "primary") return;
    m.setGate(core.mayRun(m.slice) && !this.diskPort?.scheduler.stalled);
    m.setProgress(core.state === "protected" || core.state === "joining");
  }

  private onPrimaryBatch(b: MachineBatch): void {
    const core = this.primary;
    if (!core || this.role !== "primary") return;
    for (const e of b.entries) {
      core.append(e);
      if (e.kind === "serial" && e.source) {
        this.stream.inputApplied(e.slice, e.source.client, e.source.seq);
        this.inputInFlightBytes = Math.max(0, this.inputInFlightBytes - e.data.length);
      }
    }
    core.noteSlice(b.slice);
    // when the slice ended, on this thread's clock
    const atMs = b.atWallMs - performance.timeOrigin;
    if (core.state === "protected") {
      this.sliceTimes.push({ slice: b.slice, atMs });
      if (this.sliceTimes.length > 100_000) this.sliceTimes.splice(0, 50_000);
    }
    for (const o of b.output) {
      this.stream.append(o.slice, o.data);
      this.outputPending.push({ end: this.stream.end, atMs, protected: core.state === "protected" });
    }
    for (const d of b.disk) this.diskPort?.submit(d.requests, d.slice);
    // the log (with the progress entry the machine wrote after output) goes out at once: the output rule
    this.effects(core.flush());
    this.release();
    this.updateGate();
  }

  /**
   * The checkpoint a joining backup wanted was taken (its control entry was in the batch before):
   * compress and send it while the guest goes on. The log that follows the checkpoint entry is held
   * back until the checkpoint is out.
   */
  private serveCheckpoint(checkpoint: SessionCheckpoint, pauseMs: number): void {
    const core = this.primary;
    if (!core || this.role !== "primary" || !core.checkpointWanted) return;
    const first = core.logLength;
    core.checkpointTaken(first);
    this.release(); // joining: output leaves at once, so the whole stream is released here
    const consoleAt = { offset: this.stream.end, inputs: [...this.stream.appliedInput.entries()] };
    void this.sendCheckpoint(checkpoint, first, core, this.peer, pauseMs, consoleAt);
  }

  private async sendCheckpoint(checkpoint: SessionCheckpoint, first: number, core: PrimaryCore, peer: WebSocket | undefined, pauseMs: number, consoleAt: { offset: number; inputs: Array<[string, number]> }): Promise<void> {
    const t0 = performance.now();
    let bytes: Buffer;
    try {
      bytes = await encodeCheckpoint(checkpoint);
    } catch (e) {
      this.log.error({ reason: (e as Error).message }, "checkpoint could not be encoded");
      this.effects(core.checkpointFailed());
      return;
    }
    if (this.primary !== core) return;
    if (this.peer !== peer || !peer || peer.readyState !== WebSocket.OPEN) {
      // the joiner reconnected or went away while the checkpoint was being compressed
      this.log.warn({}, "joining backup's connection changed: the checkpoint is taken again");
      this.effects(core.checkpointFailed());
      return;
    }
    const parts = Math.ceil(bytes.length / checkpointPartBytes);
    const slice = checkpoint.driver.slice;
    for (let part = 0; part < parts; part++) {
      const data = bytes.subarray(part * checkpointPartBytes, (part + 1) * checkpointPartBytes);
      const frame = encodePeerMessage({ type: "checkpoint", epoch: core.epoch, first, slice, part, parts, data, console: consoleAt.offset, inputs: consoleAt.inputs });
      this.peerBytesSent += frame.byteLength;
      peer.send(frame);
    }
    const rawBytes = checkpoint.machine.memory.byteLength + checkpoint.machine.devices.byteLength;
    const sendMs = performance.now() - t0;
    this.joins.push({ pauseMs, rawBytes, bytes: bytes.length, sendMs });
    this.log.info({ slice, pauseMs: Math.round(pauseMs), rawBytes, bytes: bytes.length, sendMs: Math.round(sendMs), waitedMs: Math.round(performance.now() - (this.checkpointWantedAtMs ?? t0)) }, "checkpoint sent to the joining backup");
    this.effects(core.checkpointSent());
  }

  private release(): void {
    const core = this.primary;
    if (!core || this.role !== "primary") return;
    const releasable = core.releasableSlice();
    this.diskPort?.release(releasable);
    const due = this.stream.release(releasable);
    const now = performance.now();
    while (this.outputPending.length > 0 && this.outputPending[0]!.end <= this.stream.released) {
      const o = this.outputPending.shift()!;
      if (o.protected) this.outputDelay.add(now - o.atMs);
    }
    for (const [ws, c] of this.consoles) {
      if (c.clientId === undefined) continue;
      this.pushOutput(ws, c);
      for (const a of due) if (a.client === c.clientId) this.sendConsole(ws, { type: "inack", seq: a.seq });
    }
  }

  // ---------------------------------------------------------------- backup

  private connectToPrimary(): void {
    if (this.role !== "backup" || !this.backup || (this.backup.state !== "waiting" && this.backup.state !== "following")) return;
    const url = new URL("/peer", this.options.connect!);
    url.searchParams.set("token", this.options.token);
    const ws = new WebSocket(url, { maxPayload: 64 * 2 ** 20 });
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      this.peer = ws;
      this.log.info({ primary: this.options.connect }, "connected to the primary");
      this.effects(this.backup?.connected(performance.now()) ?? []);
    });
    ws.on("message", (data: Buffer) => this.onPeerFrame(data, ws));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.peer === ws) this.peer = undefined;
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = setTimeout(() => this.connectToPrimary(), 100);
    });
  }

  private loadHeaderMachine(header: LogHeader): LoadedMachine {
    const image = this.options.imageOverride ?? header.machine.name;
    if (!this.options.imageOverride && !bundledImageNames().includes(image)) {
      throw new LockstepError(ErrorCode.imageUnknown, `The primary's machine "${image}" is not a bundled image`, "pass --image CONFIG.json");
    }
    const loaded = loadMachine(image, { memoryMiB: header.machine.memoryMiB });
    checkHeader(header, loaded);
    return loaded;
  }

  /** The machine a backup replays on: checked against the primary's header here, built in its own thread. */
  private backupInit(header: LogHeader, checkpoint?: { bytes: Uint8Array; slice: number }): MachineInit {
    const loaded = this.loadHeaderMachine(header);
    return {
      role: "backup",
      image: loaded.source,
      load: { memoryMiB: header.machine.memoryMiB },
      // the disk itself is not opened until takeover: the log carries every read's data
      ...(header.disk ? { diskBytes: header.disk.bytes } : {}),
      clock: header.clock,
      digestEverySlices: 1000,
      paced: true,
      ...(checkpoint ? { checkpoint } : {}),
    };
  }

  private async prepareMachine(header: LogHeader): Promise<void> {
    this.header = header;
    const machine = await MachineThread.start(this.backupInit(header), this.backupEvents());
    if (this.role === "halted") return void machine.kill();
    this.machine = machine;
    this.startFollowing(header.machine.name);
  }

  /** What the machine thread reports while this node is a backup. */
  private backupEvents() {
    return {
      batch: (b: MachineBatch) => {
        for (const o of b.output) this.stream.append(o.slice, o.data);
      },
      executed: (slice: number) => {
        // report at once what was executed: the primary's lag control and lag figures wait on it
        if (this.backup && this.role === "backup") this.effects(this.backup.executedThrough(slice));
      },
      tookOver: (_slice: number, pending: DiskRequest[]) => this.tookOver?.(pending),
      failed: (reason: string) => this.halt(`backup machine stopped: ${reason}`),
    };
  }

  /** Starts following: the machine gets every entry received so far, then each one as it arrives. */
  private startFollowing(machineName: string): void {
    this.entriesPassed = 0;
    this.passEntries();
    this.log.info({ machine: machineName, epoch: this.backup!.epoch }, "backup machine ready: following the log");
  }

  private passEntries(): void {
    const b = this.backup;
    if (!b || !this.machine || this.role !== "backup") return;
    const fresh = b.entries.slice(this.entriesPassed);
    this.entriesPassed = b.entries.length;
    for (const e of fresh) if (e.kind === "serial" && e.source) this.stream.inputApplied(e.slice, e.source.client, e.source.seq);
    this.machine.entries(fresh);
  }

  private tookOver: ((pending: DiskRequest[]) => void) | undefined;

  private async takeOver(epoch: number): Promise<void> {
    const t0 = performance.now();
    this.peer?.terminate();
    this.peer = undefined;
    clearTimeout(this.reconnectTimer);
    if (this.preparing) await this.preparing;
    const machine = this.machine;
    if (!machine) return this.halt("won the epoch before the machine was ready");
    const location = this.options.disk ?? this.header?.disk?.location;
    if (this.header?.disk) {
      if (!location) return this.halt("the primary's log names no disk location: pass --disk");
      // the shared disk must be reachable to go live; until it is, the guest stays paused here
      for (let attempt = 0; !this.diskBackend; attempt++) {
        try {
          this.diskBackend = await openDiskBackend(location);
        } catch (e) {
          if (attempt === 0) this.log.error({ disk: location, reason: (e as Error).message }, "the shared disk cannot be opened: retrying every second before going live");
          await new Promise((r) => setTimeout(r, 1000));
          if (this.role === "halted") return;
        }
      }
    }
    // the machine replays everything received, then waits at the gate for this side to be ready
    this.passEntries();
    machine.setGate(false);
    const pending = await new Promise<DiskRequest[]>((resolve) => {
      this.tookOver = resolve;
      machine.goLive();
    });
    this.tookOver = undefined;
    if (this.role === "halted") return;
    const entries = this.backup!.entries;
    this.becomePrimary(epoch, entries.slice(), !this.backup!.checkpointed, pending);
    this.liveAtMs = performance.now();
    this.log.warn({ epoch, slice: machine.slice, entries: entries.length, replayMs: Math.round(this.liveAtMs - t0) }, "took over: now the primary");
  }

  // ---------------------------------------------------------------- effects, ticks, halting

  private tick(): void {
    const now = performance.now();
    if (this.primary && this.role === "primary") {
      const core = this.primary;
      this.effects(core.tick(now));
      this.release();
      this.updateGate();
    } else if (this.backup && this.role === "backup") {
      if (this.machine) this.backup.setExecuted(this.machine.slice);
      this.effects(this.backup.tick(now));
    }
  }

  private effects(effects: Array<CoreEffect | BackupEffect>): void {
    for (const e of effects) {
      switch (e.type) {
        case "send":
          if (this.peer?.readyState === WebSocket.OPEN) {
            const bytes = encodePeerMessage(e.message);
            this.peerBytesSent += bytes.byteLength;
            this.peer.send(bytes);
          }
          break;
        case "claim-epoch":
          this.claim(e.epoch);
          break;
        case "halt":
          this.halt(e.reason);
          break;
        case "log":
          this.log[e.level](e.fields ?? {}, e.msg);
          break;
        case "header":
          this.header = e.header;
          // a joining backup builds its machine from the checkpoint instead (see onCheckpointPart)
          if (!this.options.join) this.preparing = this.prepareMachine(e.header).catch((err) => this.halt(err instanceof LockstepError ? err.toLine() : String(err)));
          break;
        case "checkpoint-wanted":
          this.checkpointWantedAtMs = performance.now();
          this.machine?.requestCheckpoint();
          this.log.info({}, "a backup joins from a checkpoint: taking one at the next boundary without disk I/O in flight");
          break;
        case "go-live":
          void this.takeOver(e.epoch);
          break;
      }
    }
  }

  private claim(epoch: number): void {
    this.options.arbiter.claim(epoch, this.options.nodeId).then((won) => {
      if (won === undefined) this.log.warn({ epoch }, "arbiter unreachable: nobody goes live until it answers");
      const answer = () => {
        if (this.primary && this.role === "primary") this.effects(this.primary.arbiterAnswer(epoch, won));
        else if (this.backup && this.role === "backup") this.effects(this.backup.arbiterAnswer(epoch, won));
      };
      if (won === undefined) setTimeout(answer, 100);
      else answer();
    });
  }

  halt(reason: string): void {
    if (this.role === "halted") return;
    this.role = "halted";
    this.haltReason = reason;
    void this.machine?.kill();
    // a halted node never touches the shared disk again: the new primary owns it
    this.diskPort?.scheduler.close();
    this.peer?.terminate();
    clearTimeout(this.reconnectTimer);
    for (const ws of this.consoles.keys()) {
      this.sendConsole(ws, { type: "status", role: "halted", epoch: this.currentEpoch, live: false });
      ws.close(4001, "halted");
    }
    this.log.error({ reason }, "halted");
    this.emit("halted", reason);
  }

  async close(): Promise<void> {
    clearInterval(this.ticker);
    clearTimeout(this.reconnectTimer);
    await this.machine?.stop();
    this.peer?.terminate();
    await this.server.close();
    this.diskPort?.scheduler.close();
    await this.diskBackend?.close().catch(() => {});
  }

  // ---------------------------------------------------------------- sockets

  /**
   * A backup connection is only a candidate until the core accepts its hello; then it replaces the
   * current peer. So a stray or hostile connection (even with the token) cannot cut off the backup.
   */
  private acceptPeer(ws: WebSocket, req: IncomingMessage): void {
    if (this.role !== "primary") {
      ws.close(4001, "not the primary");
      return;
    }
    this.log.info({ remote: req.socket.remoteAddress }, "peer connection");
    ws.on("message", (data: Buffer) => this.onPeerFrame(data, ws));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.peer === ws) {
        this.peer = undefined;
        this.primary?.peerDisconnected();
      }
    });
  }

  private onPeerFrame(data: Buffer, from?: WebSocket): void {
    const ws = from ?? this.peer;
    this.peerBytesReceived += data.byteLength;
    let msg;
    try {
      msg = decodePeerMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (e) {
      const code = e instanceof WireError ? e.code : "LOCKSTEP_ERR_WIRE_UNDECODABLE";
      this.log.warn({ code, bytes: data.byteLength }, `peer frame rejected: ${(e as Error).message}`);
      ws?.close(1008, code);
      return;
    }
    const now = performance.now();
    if (this.primary && this.role === "primary") {
      if (ws !== this.peer) {
        if (msg.type !== "hello") {
          this.log.warn({ type: msg.type }, "peer frame before hello ignored");
          return;
        }
        const effects = this.primary.step(msg, now);
        if (this.primary.backupId !== msg.nodeId) {
          this.effects(effects); // the rejection's log line
          ws?.close(4003, "hello rejected");
          return;
        }
        if (this.peer) this.peer.terminate();
        this.peer = ws;
        this.effects(effects);
      } else {
        this.effects(this.primary.step(msg, now));
        if (msg.type === "ack") this.sampleLag(msg.executed, now);
      }
      this.release();
      this.updateGate();
    } else if (this.backup && this.role === "backup") {
      if (this.machine) this.backup.setExecuted(this.machine.slice);
      this.effects(this.backup.step(msg, now));
      if (msg.type === "checkpoint" && msg.epoch === this.backup.epoch) this.onCheckpointPart(msg);
      else if (msg.type === "log") this.passEntries();
    }
  }

  /** Backup, joining: collects the checkpoint's parts, then builds the machine from it. */
  private onCheckpointPart(msg: Extract<PeerMessage, { type: "checkpoint" }>): void {
    if (!this.options.join || this.backup!.checkpointed || this.preparing) return;
    const c = (this.incoming ??= { first: msg.first, slice: msg.slice, console: msg.console, inputs: msg.inputs, parts: new Array<Uint8Array | undefined>(msg.parts).fill(undefined) });
    if (c.first !== msg.first || c.slice !== msg.slice || c.parts.length !== msg.parts) {
      this.incoming = undefined; // a new checkpoint started: take that one
      return this.onCheckpointPart(msg);
    }
    c.parts[msg.part] = msg.data;
    if (c.parts.some((p) => !p)) return;
    this.incoming = undefined;
    const bytes = Buffer.concat(c.parts as Uint8Array[]);
    this.preparing = this.prepareFromCheckpoint(bytes, c.first, c.slice, c.console, c.inputs).catch((err: Error) => this.halt(`checkpoint refused: ${err instanceof LockstepError ? err.toLine() : err.message}`));
  }

  private async prepareFromCheckpoint(bytes: Buffer, first: number, slice: number, consoleOffset: number, inputs: Array<[string, number]>): Promise<void> {
    const header = this.header;
    if (!header) throw new LockstepError(ErrorCode.checkpointCorrupt, "a checkpoint arrived before the log header");
    // the machine thread decodes and checks the checkpoint; its error names the code
    const machine = await MachineThread.start(this.backupInit(header, { bytes, slice }), this.backupEvents());
    if (this.role === "halted") return void machine.kill();
    this.machine = machine;
    this.backup!.checkpointReceived(first, slice);
    this.stream.startAt(consoleOffset, inputs);
    this.log.info({ slice, bytes: bytes.length, first }, "checkpoint received: following the log from there");
    this.startFollowing(header.machine.name);
  }

  private acceptConsole(ws: WebSocket): void {
    const live = this.role === "primary";
    this.sendConsole(ws, { type: "status", role: this.role === "starting" ? "backup" : this.role, epoch: this.currentEpoch, live });
    if (!live) {
      ws.close(4001, "not live");
      return;
    }
    const client: ConsoleClient = { clientId: undefined, offset: 0 };
    this.consoles.set(ws, client);
    ws.on("message", (data: Buffer) => this.onConsoleFrame(ws, client, data));
    ws.on("error", () => {});
    ws.on("close", () => this.consoles.delete(ws));
  }

  private sampleLag(executed: number, now: number): void {
    let sample: number | undefined;
    while (this.sliceTimes.length > 0 && this.sliceTimes[0]!.slice <= executed) sample = now - this.sliceTimes.shift()!.atMs;
    if (sample !== undefined) this.backupLag.add(sample);
  }

  private onConsoleFrame(ws: WebSocket, client: ConsoleClient, data: Buffer): void {
    let msg;
    try {
      msg = decodeConsoleClientMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (e) {
      const code = e instanceof WireError ? e.code : "LOCKSTEP_ERR_WIRE_UNDECODABLE";
      this.log.warn({ code }, `console frame rejected: ${(e as Error).message}`);
      ws.close(1008, code);
      return;
    }
    if (this.role !== "primary") return;
    if (msg.type === "attach") {
      if (msg.offset < this.stream.retainedFrom || msg.offset > this.stream.end) {
        this.log.warn({ clientId: msg.clientId, offset: msg.offset }, "console attach at an offset this node cannot serve");
        ws.close(4002, `offset ${msg.offset} not available (have ${this.stream.retainedFrom}..${this.stream.end})`);
        return;
      }
      client.clientId = msg.clientId;
      client.offset = msg.offset;
      const acked = this.stream.ackedInput.get(msg.clientId);
      if (acked) this.sendConsole(ws, { type: "inack", seq: acked });
      this.pushOutput(ws, client);
      return;
    }
    if (client.clientId === undefined) return;
    const id = client.clientId;
    const known = Math.max(this.stream.appliedInput.get(id) ?? 0, this.queuedInput.get(id) ?? 0);
    if (msg.seq <= known) {
      const acked = this.stream.ackedInput.get(id) ?? 0;
      if (msg.seq <= acked) this.sendConsole(ws, { type: "inack", seq: acked });
      return; // applied already (or queued): exactly once
    }
    if (msg.seq !== known + 1) return; // a gap: the client resends in order
    if (!this.machine || this.inputInFlightBytes + msg.data.length > inputInFlightBytesMax) return; // the client resends
    this.inputInFlightBytes += msg.data.length;
    this.queuedInput.set(id, msg.seq);
    this.machine.input(msg.data, { client: id, seq: msg.seq });
  }

  private pushOutput(ws: WebSocket, c: ConsoleClient): void {
    for (;;) {
      if (ws.bufferedAmount > consoleBufferedBytesMax) {
        this.log.warn({ clientId: c.clientId }, "console client too slow: disconnected");
        ws.terminate();
        return;
      }
      const chunk = this.stream.read(c.offset, 64 * 1024);
      if (!chunk || chunk.data.length === 0) return;
      this.sendConsole(ws, { type: "output", offset: chunk.offset, data: chunk.data });
      c.offset += chunk.data.length;
    }
  }

  private sendConsole(ws: WebSocket, m: ConsoleServerMessage): void {
    if (ws.readyState === WebSocket.OPEN) ws.send(encodeConsoleMessage(m));
  }
}
