/**
 * LockstepNode: the imperative shell of one node. Every decision is the NodeCore's (roles, epochs,
 * the output rule, console sessions, checkpoints, takeover); this file only carries its effects out
 * and turns the world into its events:
 *
 *   the machine      a MachineThread (v86 in its own worker thread, running slices back to back)
 *   the peer         one WebSocket: the backup dials the primary and redials; the primary accepts
 *                    candidates and lets the core pick one by its hello
 *   consoles         WebSockets of console clients (numbered sessions for the core)
 *   the shared disk  a DiskScheduler behind a BackendDiskPort (primary only)
 *   the arbiter      epoch claims
 *   time             a 5 ms ticker (heartbeats, failure detection)
 *
 * Because the machine has its own thread, this thread is idle between events, so log frames, acks
 * and heartbeats are served at once, never after a batch of slices.
 *
 * Over 400 lines: one exhaustive switch over NodeEffect and the sockets it writes to; split next
 * into a peer link and a console server once the network issue adds a third kind of link.
 */
import { randomInt } from "node:crypto";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { EventEmitter } from "node:events";
import type { IncomingMessage } from "node:http";
import type { Logger } from "pino";
import { WebSocket } from "ws";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { writeDiskFile } from "../../emulator/disk-file.js";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { bundledImageNames, loadMachine } from "../../emulator/machine-config.js";
import type { SessionCheckpoint } from "../../hypervisor/checkpoint.js";
import { openDiskBackend, type DiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { BackendDiskPort } from "../../hypervisor/disk/disk-port.js";
import { buildHeader, checkHeader } from "../../hypervisor/log-header.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { MachineInit } from "../../hypervisor/machine-thread/machine-protocol.js";
import { MachineThread, type MachineEvents } from "../../hypervisor/machine-thread/machine-thread.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import type { Arbiter } from "../arbiter/arbiter.js";
import { NodeCore, type NodeEffect } from "../core/node-core.js";
import { NodeServer } from "../transport/node-server.js";
import { WireError } from "../wire/envelope.js";
import { decodeConsoleClientMessage, encodeConsoleMessage } from "../wire/console-messages.js";
import { decodePeerMessage, encodePeerMessage } from "../wire/peer-messages.js";
import { sendCheckpoint, type CheckpointSent } from "./checkpoint-sender.js";
import { nodeMetrics } from "./node-metrics.js";

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

/** Console messages queued per client at most before it is dropped as too slow. */
const consoleBufferedBytesMax = 8 * 2 ** 20;
const tickIntervalMs = 5;
const digestEverySlices = 1000;
/** One clock for the core and the machine's batch times: host Unix ms, monotonic. */
const nowMs = () => performance.timeOrigin + performance.now();

export class LockstepNode extends EventEmitter {
  readonly core: NodeCore;
  private readonly server: NodeServer;
  private readonly log: Logger;
  private machine: MachineThread | undefined;
  private header: LogHeader | undefined;
  private peer: WebSocket | undefined;
  private consoles = new Map<number, WebSocket>();
  private nextSession = 1;
  private ticker: NodeJS.Timeout | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private diskBackend: DiskBackend | undefined;
  private diskPort: BackendDiskPort | undefined;
  private diskLocation: string | undefined;
  /** The checkpoint the machine took last, until the core says where it goes. */
  private checkpoint: { checkpoint: SessionCheckpoint; pauseMs: number } | undefined;
  private checkpointWantedAtMs: number | undefined;
  /** Joins served from a checkpoint: primary pause (capture) and bytes sent. */
  readonly joins: CheckpointSent[] = [];
  readonly startedAtMs = performance.now();
  private takeoverStartMs: number | undefined;
  peerBytesSent = 0;
  peerBytesReceived = 0;

  private constructor(readonly options: NodeOptions) {
    super();
    this.log = options.logger.child({ component: "node", nodeId: options.nodeId });
    this.core = new NodeCore({ nodeId: options.nodeId, heartbeatIntervalMs: options.heartbeatIntervalMs, failureTimeoutMs: options.failureTimeoutMs, ...(options.join ? { join: true } : {}) });
    const registry = nodeMetrics(this.core, () => this.machine);
    this.server = new NodeServer({
      host: options.host,
      port: options.port,
      token: options.token,
      status: () => this.status(),
      metrics: () => registry.metrics(),
      onPeer: (ws, req) => this.acceptPeer(ws, req),
      onConsole: (ws) => this.acceptConsole(ws),
      onRejected: (reason, remote) => this.log.warn({ remote }, `connection refused: ${reason}`),
    });
  }

  get role(): "primary" | "backup" | "halted" {
    return this.core.role;
  }

  get port(): number {
    return this.server.port;
  }

  status(): Record<string, unknown> {
    const m = this.machine;
    const s = this.diskPort?.scheduler;
    return {
      nodeId: this.options.nodeId,
      ...this.core.status(),
      slice: m?.slice ?? 0,
      instructions: m?.icount ?? 0,
      guestMs: Math.round(m?.counters.guestMs ?? 0),
      digestsVerified: this.core.role === "backup" ? (m?.counters.digestsVerified ?? 0) : null,
      joinsServed: this.joins.length,
      lastJoin: this.joins.at(-1) ?? null,
      disk: s ? { location: this.diskBackend!.description, outstanding: s.outstanding, heldWrites: s.heldWrites, stalled: s.stalled ?? null, ...s.totals } : null,
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
    const image = options.image ?? "linux";
    const load = options.memoryMiB !== undefined ? { memoryMiB: options.memoryMiB } : {};
    const loaded = loadMachine(image, load);
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
    node.header = buildHeader({ loaded, disk, clock, digestEverySlices, recordedAt: new Date() });
    // at power-on the guest's clock starts at the host's time
    const init: MachineInit = { role: "primary", image, load, ...(disk ? { diskBytes: disk.bytes } : {}), clock, wallEpochMs: clock.epochMs, digestEverySlices, paced: true };
    node.machine = await MachineThread.start(init, node.machineEvents());
    await node.server.listen();
    node.effects(node.core.startPrimary(epoch, node.header, node.machine.slice));
    node.log.info({ epoch, port: node.port, image: loaded.config.name }, "primary started");
    return node;
  }

  static async startBackup(options: NodeOptions): Promise<LockstepNode> {
    const node = new LockstepNode(options);
    node.effects(node.core.startBackup());
    await node.server.listen();
    node.connectToPrimary();
    node.ticker = setInterval(() => node.tick(), tickIntervalMs);
    node.log.info({ port: node.port, primary: options.connect }, "backup started");
    return node;
  }

  /** What the machine thread reports, for the core. */
  private machineEvents(): MachineEvents {
    return {
      batch: (b) => this.effects(this.core.machineBatch(b, nowMs())),
      executed: (slice) => this.effects(this.core.machineExecuted(slice)),
      checkpoint: (checkpoint, pauseMs) => {
        this.checkpoint = { checkpoint, pauseMs };
        this.effects(this.core.checkpointTaken());
        this.checkpoint = undefined;
      },
      tookOver: (slice, pending) => this.effects(this.core.machineTookOver(slice, pending)),
      inputRefused: (source) => this.core.inputRefused(source),
      failed: (reason) => this.effects(this.core.halt(this.core.role === "backup" ? `backup machine stopped: ${reason}` : `machine stopped: ${reason}`)),
    };
  }

  /** The machine a backup replays on: checked against the primary's header here, built in its own thread. */
  private async startMachine(header: LogHeader, checkpoint?: { bytes: Uint8Array; slice: number }): Promise<void> {
    this.header = header;
    try {
      const image = this.options.imageOverride ?? header.machine.name;
      if (!this.options.imageOverride && !bundledImageNames().includes(image)) {
        throw new LockstepError(ErrorCode.imageUnknown, `The primary's machine "${image}" is not a bundled image`, "pass --image CONFIG.json");
      }
      const load = { memoryMiB: header.machine.memoryMiB };
      checkHeader(header, loadMachine(image, load));
      // the disk itself is not opened until takeover: the log carries every read's data
      const init: MachineInit = { role: "backup", image, load, ...(header.disk ? { diskBytes: header.disk.bytes } : {}), clock: header.clock, digestEverySlices, paced: true, ...(checkpoint ? { checkpoint } : {}) };
      const machine = await MachineThread.start(init, this.machineEvents());
      if (this.core.role === "halted") return void machine.kill();
      this.machine = machine;
      this.effects(this.core.machineStarted(machine.slice));
    } catch (e) {
      const why = e instanceof LockstepError ? e.toLine() : (e as Error).message;
      // the machine could not be built (a refused checkpoint, a mismatched image)
      this.effects(this.core.halt(checkpoint ? `checkpoint refused: ${why}` : why));
    }
  }

  // ---------------------------------------------------------------- effects

  private effects(effects: NodeEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case "send":
          this.sendPeer(this.peer, encodePeerMessage(e.message));
          break;
        case "peer-accept":
        case "peer-refuse":
          break; // handled where the hello arrived (onPeerFrame)
        case "claim-epoch":
          this.claim(e.epoch);
          break;
        case "log":
          this.log[e.level](e.fields ?? {}, e.msg);
          break;
        case "halt":
          this.halted(e.reason);
          break;
        case "start-machine":
          void this.startMachine(e.header, e.checkpoint);
          break;
        case "machine-input":
          this.machine?.input(e.data, e.source);
          break;
        case "machine-entries":
          this.machine?.entries(e.entries);
          break;
        case "machine-checkpoint":
          this.checkpointWantedAtMs = performance.now();
          this.machine?.requestCheckpoint();
          break;
        case "machine-gate":
          this.machine?.setProgress(e.progress);
          this.machine?.setGate(e.open);
          break;
        case "prepare-takeover":
          void this.prepareTakeover();
          break;
        case "machine-go-live":
          this.machine?.goLive();
          break;
        case "became-primary":
          this.becamePrimary(e.epoch, e.reissue);
          break;
        case "disk-submit":
          this.diskPort?.submit(e.requests, e.slice);
          break;
        case "disk-release":
          this.diskPort?.release(e.slice, e.untilMs);
          break;
        case "send-checkpoint":
          this.sendCheckpoint(e);
          break;
        case "console-send": {
          const ws = this.consoles.get(e.session);
          if (!ws || ws.readyState !== WebSocket.OPEN) break;
          if (ws.bufferedAmount > consoleBufferedBytesMax) {
            this.log.warn({ session: e.session }, "console client too slow: disconnected");
            ws.terminate();
            break;
          }
          ws.send(encodeConsoleMessage(e.message));
          break;
        }
        case "console-close":
          this.consoles.get(e.session)?.close(e.code, e.reason);
          break;
      }
    }
  }

  private sendPeer(ws: WebSocket | undefined, bytes: Uint8Array): void {
    if (ws?.readyState !== WebSocket.OPEN) return;
    this.peerBytesSent += bytes.byteLength;
    ws.send(bytes);
  }

  private becamePrimary(epoch: number, reissue: DiskRequest[]): void {
    const machine = this.machine!;
    if (this.diskBackend && !this.diskPort) {
      this.diskPort = new BackendDiskPort(
        this.diskBackend,
        { queueDiskRead: (id, data) => machine.diskRead(id, data), queueDiskWrite: (id) => machine.diskWrite(id) },
        {
          holdWrites: true, // released by the output rule (disk-release effects)
          wake: () => {}, // the machine thread wakes on every message
          onStall: (reason) => {
            if (reason) this.log.error({ reason, disk: this.diskBackend!.description }, "disk backend failing: the guest is paused until it works again");
            else this.log.info({ disk: this.diskBackend!.description }, "disk backend works again: the guest goes on");
            this.effects(this.core.diskStall(reason));
          },
        },
      );
    }
    if (this.diskPort && reissue.length > 0) {
      // takeover: every request the old primary may not have completed is issued again
      this.log.warn({ requests: reissue.length, ids: reissue.map((r) => r.id) }, "re-issuing disk requests that were not completed");
      this.diskPort.submit(reissue, machine.slice);
    }
    this.ticker ??= setInterval(() => this.tick(), tickIntervalMs);
    if (this.takeoverStartMs !== undefined) this.log.warn({ epoch, replayMs: Math.round(performance.now() - this.takeoverStartMs) }, "live after the takeover");
    this.emit("live", epoch);
  }

  private sendCheckpoint(at: { first: number; console: number; inputs: Array<[string, number]> }): void {
    const taken = this.checkpoint;
    const peer = this.peer;
    if (!taken || !peer) return void this.effects(this.core.checkpointFailed());
    const epoch = this.core.epoch;
    const slice = taken.checkpoint.driver.slice;
    void sendCheckpoint(taken.checkpoint, { epoch, ...at }, peer, () => this.peer === peer && this.core.role === "primary", (n) => (this.peerBytesSent += n)).then((r) => {
      if ("failed" in r) {
        this.log.warn({}, r.failed);
        return this.effects(this.core.checkpointFailed());
      }
      this.joins.push({ pauseMs: taken.pauseMs, ...r });
      this.log.info({ slice, pauseMs: Math.round(taken.pauseMs), rawBytes: r.rawBytes, bytes: r.bytes, sendMs: Math.round(r.sendMs), waitedMs: Math.round(performance.now() - (this.checkpointWantedAtMs ?? performance.now())) }, "checkpoint sent to the joining backup");
      this.effects(this.core.checkpointSent());
    });
  }

  /** Takeover: the shared disk must be reachable to go live; until it is, the guest stays paused. */
  private async prepareTakeover(): Promise<void> {
    this.takeoverStartMs = performance.now();
    this.peer?.terminate();
    this.peer = undefined;
    clearTimeout(this.reconnectTimer);
    const location = this.options.disk ?? this.header?.disk?.location;
    if (this.header?.disk) {
      if (!location) return this.effects(this.core.halt("the primary's log names no disk location: pass --disk"));
      for (let attempt = 0; !this.diskBackend; attempt++) {
        try {
          this.diskBackend = await openDiskBackend(location);
        } catch (e) {
          if (attempt === 0) this.log.error({ disk: location, reason: (e as Error).message }, "the shared disk cannot be opened: retrying every second before going live");
          await new Promise((r) => setTimeout(r, 1000));
          if (this.core.role === "halted") return;
        }
      }
    }
    this.effects(this.core.readyToGoLive());
  }

  private tick(): void {
    this.effects(this.core.tick(nowMs(), this.machine?.slice ?? 0));
  }

  private claim(epoch: number): void {
    this.options.arbiter.claim(epoch, this.options.nodeId).then((won) => {
      if (won === undefined) this.log.warn({ epoch }, "arbiter unreachable: nobody goes live until it answers");
      const answer = () => this.effects(this.core.arbiterAnswer(epoch, won));
      if (won === undefined) setTimeout(answer, 100);
      else answer();
    });
  }

  private halted(reason: string): void {
    void this.machine?.kill();
    // a halted node never touches the shared disk again: the new primary owns it
    this.diskPort?.scheduler.close();
    this.peer?.terminate();
    clearTimeout(this.reconnectTimer);
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

  /** Backup: dials the primary, and again 100 ms after every close, while it follows. */
  private connectToPrimary(): void {
    const b = this.core.backup;
    if (this.core.role !== "backup" || !b || (b.state !== "waiting" && b.state !== "following")) return;
    const url = new URL("/peer", this.options.connect!);
    url.searchParams.set("token", this.options.token);
    const ws = new WebSocket(url, { maxPayload: 64 * 2 ** 20 });
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      this.peer = ws;
      this.log.info({ primary: this.options.connect }, "connected to the primary");
      this.effects(this.core.peerConnected(nowMs()));
    });
    ws.on("message", (data: Buffer) => this.onPeerFrame(data, ws));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.peer === ws) this.peer = undefined;
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = setTimeout(() => this.connectToPrimary(), 100);
    });
  }

  /**
   * Primary: a backup connection is only a candidate until the core accepts its hello; then it
   * replaces the current peer. So a stray or hostile connection (even with the token) cannot cut
   * off the backup.
   */
  private acceptPeer(ws: WebSocket, req: IncomingMessage): void {
    if (this.core.role !== "primary") {
      ws.close(4001, "not the primary");
      return;
    }
    this.log.info({ remote: req.socket.remoteAddress }, "peer connection");
    ws.on("message", (data: Buffer) => this.onPeerFrame(data, ws));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.peer === ws) {
        this.peer = undefined;
        this.core.peerDisconnected();
      }
    });
  }

  private onPeerFrame(data: Buffer, ws: WebSocket): void {
    this.peerBytesReceived += data.byteLength;
    let msg;
    try {
      msg = decodePeerMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (e) {
      const code = e instanceof WireError ? e.code : "LOCKSTEP_ERR_WIRE_UNDECODABLE";
      this.log.warn({ code, bytes: data.byteLength }, `peer frame rejected: ${(e as Error).message}`);
      ws.close(1008, code);
      return;
    }
    const candidate = this.core.role === "primary" && ws !== this.peer;
    const effects = this.core.peerMessage(msg, nowMs(), candidate);
    if (candidate) {
      const refused = effects.find((e) => e.type === "peer-refuse");
      if (refused) {
        this.effects(effects); // the refusal's log line
        ws.close(4003, refused.reason);
        return;
      }
      if (effects.some((e) => e.type === "peer-accept")) {
        if (this.peer && this.peer !== ws) this.peer.terminate();
        this.peer = ws;
      }
    }
    this.effects(effects);
  }

  private acceptConsole(ws: WebSocket): void {
    const session = this.nextSession++;
    this.consoles.set(session, ws);
    ws.on("message", (data: Buffer) => this.onConsoleFrame(session, ws, data));
    ws.on("error", () => {});
    ws.on("close", () => {
      this.consoles.delete(session);
      this.core.consoleClosed(session);
    });
    this.effects(this.core.consoleOpened(session));
  }

  private onConsoleFrame(session: number, ws: WebSocket, data: Buffer): void {
    let msg;
    try {
      msg = decodeConsoleClientMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    } catch (e) {
      const code = e instanceof WireError ? e.code : "LOCKSTEP_ERR_WIRE_UNDECODABLE";
      this.log.warn({ code }, `console frame rejected: ${(e as Error).message}`);
      ws.close(1008, code);
      return;
    }
    this.effects(msg.type === "attach" ? this.core.consoleAttach(session, msg.clientId, msg.offset) : this.core.consoleInput(session, msg.seq, msg.data));
  }
}
