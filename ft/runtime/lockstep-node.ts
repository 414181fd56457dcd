/**
 * LockstepNode: the imperative shell of one node. Every decision is the NodeCore's (roles, epochs,
 * the output rule, console sessions, checkpoints, takeover); this file turns the world into the
 * core's events and carries its effects out, each kind through its own part:
 *
 *   the machine      a MachineThread (v86 in its own worker thread, running slices back to back),
 *                    started from what machine-init builds
 *   the peer         a PeerLink: the backup dials the primary and redials; the primary accepts
 *                    candidates and lets the core pick one by its hello; and PeerBeats, heartbeat
 *                    datagrams beside it (a stalled channel is not a dead peer)
 *   consoles         a ConsoleServer (numbered sessions for the core)
 *   the shared disk  a SharedDisk (a DiskScheduler behind a BackendDiskPort, primary only)
 *   the network      a NetLink (passt or a TAP device), brought up by whichever node is primary
 *   checkpoints      sendCheckpoint, to a joining backup
 *   HTTP             a NodeServer: /status, /metrics, and the WebSockets of the peer and consoles
 *   the arbiter      epoch claims, and (etcd) renewing the primary's hold on its epoch
 *   time             a 5 ms ticker (heartbeats, failure detection)
 *
 * Because the machine has its own thread, this thread is idle between events, so log frames, acks
 * and heartbeats are served at once, never after a batch of slices.
 */
import { EventEmitter } from "node:events";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { WebSocket } from "ws";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { SessionCheckpoint } from "../../hypervisor/checkpoint.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { MachineThread, type MachineEvents } from "../../hypervisor/machine-thread/machine-thread.js";
import { isStandbyBoard, type Arbiter } from "../arbiter/arbiter.js";
import { NodeCore, type NodeEffect } from "../core/node-core.js";
import { defaultLogRetention } from "../core/retained-log.js";
import { NodeServer } from "../transport/node-server.js";
import type { PeerMessage } from "../wire/peer-messages.js";
import { sendCheckpoint, type CheckpointSent } from "./checkpoint-sender.js";
import { ConsoleServer } from "./console-server.js";
import { backupMachine, primaryMachine } from "./machine-init.js";
import type { ThreadMemory } from "../../hypervisor/machine-thread/machine-protocol.js";
import { NodeTimeline } from "../core/node-timeline.js";
import { arbiterIdentity, arbiterUnreachable, claimAtStart, refuseIfPairRunning } from "./arbiter-checks.js";
import { nodeMetrics, processMemoryMiB } from "./node-metrics.js";
import { screenToJson } from "../../emulator/text-screen.js";
import { encodePng } from "../../emulator/vga-graphics.js";
import { PeerBeats } from "./peer-beats.js";
import { PeerLink } from "./peer-link.js";
import { macBytes, prehashFile } from "../../emulator/machine-config.js";
import { gratuitousArp, type NetLink } from "./net-link.js";
import type { NetSpec } from "./net-spec.js";
import { makeNetLink } from "./open-net-link.js";
import { SharedDisk } from "./shared-disk.js";

export interface NodeOptions {
  nodeId: string;
  host: string;
  port: number;
  /** Console credential. */
  token: string;
  /** Peer credential (the logging channel); must differ from the console's. */
  peerToken: string;
  /** Serve HTTPS/WSS with this certificate and key (PEM). */
  tls?: { cert: Buffer; key: Buffer };
  /** Certificates to trust when dialing a wss:// primary (PEM; default: the system's). */
  ca?: Buffer;
  arbiter: Arbiter;
  logger: Logger;
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  /** Channel silence tolerated while the peer's heartbeat datagrams arrive (default 5000). */
  channelTimeoutMs?: number;
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
  /**
   * The host side of the guest's NIC, used while this node is primary. user mode keeps passt's
   * socket in the shared directory, where the next primary finds it.
   */
  net?: NetSpec;
  /** Backup: join from a checkpoint of the running primary instead of replaying from power-on. */
  join?: boolean;
  /** The arbiter's identity (set by startPrimary / startBackup from `arbiter`). */
  arbiterId?: string;
  /** Bytes of log kept whole from power-on (a backup attaching later is sent a checkpoint); default 16 MiB. */
  powerOnLogBytesMax?: number;
  /** Backup: the primary's address (ws://host:port) and, if the log's machine is not bundled, its config. */
  connect?: string;
  imageOverride?: string;
}

const tickIntervalMs = 5;
/** A picture of the screen is reused for requests this close together (several viewers, 4 per second each). */
const pictureReuseMs = 200;
/** How often a primary renews its hold on the epoch at a leased arbiter (a quarter of a 2 s lease). */
const holdRenewMs = 500;
/** A primary without a backup for this long asks the standbys (etcd) for one. */
const standbyAfterMs = 1000;
/** One clock for the core and the machine's batch times: host Unix ms, monotonic. */
const nowMs = () => performance.timeOrigin + performance.now();

export class LockstepNode extends EventEmitter {
  readonly core: NodeCore;
  private readonly server: NodeServer;
  private readonly log: Logger;
  private machine: MachineThread | undefined;
  private header: LogHeader | undefined;
  private readonly link: PeerLink;
  private readonly beats: PeerBeats;
  private readonly consoles: ConsoleServer;
  private ticker: NodeJS.Timeout | undefined;
  private readonly disk: SharedDisk;
  /** The checkpoint the machine took last, until the core says where it goes. */
  private checkpoint: { checkpoint: SessionCheckpoint; pauseMs: number } | undefined;
  private checkpointWantedAtMs: number | undefined;
  /** Joins served from a checkpoint: primary pause (capture) and bytes sent. */
  readonly joins: CheckpointSent[] = [];
  readonly startedAtMs = performance.now();
  private takeoverStartMs: number | undefined;
  private netLink: NetLink | undefined;
  private holdTimer: NodeJS.Timeout | undefined;
  private holdInFlight = false;
  private forgottenSaidMs = Number.NEGATIVE_INFINITY;
  private claimWaitSaidMs = Number.NEGATIVE_INFINITY;
  private closed = false;
  /** Standbys (etcd): since when this primary has run without a backup, and when it last asked for one. */
  private unprotectedSinceMs: number | undefined;
  private readonly timeline = new NodeTimeline();
  /** The machine thread's own memory (its heap and buffers, guest RAM among them), looked at every few seconds. */
  private machineMemory: ThreadMemory | undefined;
  private readonly memoryTimer = setInterval(() => {
    void this.machine?.memory().then((m) => (this.machineMemory = m ?? this.machineMemory));
  }, 5000).unref();
  private backupWantedAtMs: number | undefined;

  private constructor(readonly options: NodeOptions) {
    super();
    this.log = options.logger.child({ component: "node", nodeId: options.nodeId });
    this.core = new NodeCore({
      nodeId: options.nodeId,
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      failureTimeoutMs: options.failureTimeoutMs,
      ...(options.channelTimeoutMs !== undefined ? { channelTimeoutMs: options.channelTimeoutMs } : {}),
      ...(options.join ? { join: true } : {}),
      run: randomBytes(8).toString("hex"),
      ...(options.arbiterId !== undefined ? { arbiterId: options.arbiterId } : {}),
      ...(options.arbiter.hold ? { arbiterHold: true } : {}),
      ...(options.powerOnLogBytesMax !== undefined ? { primary: { retention: { ...defaultLogRetention, powerOnLogBytesMax: options.powerOnLogBytesMax } } } : {}),
    });
    const registry = nodeMetrics(this.core, () => this.machine);
    this.disk = new SharedDisk(this.log);
    this.link = new PeerLink(this.log, {
      mayDial: () => {
        const b = this.core.backup;
        return this.core.role === "backup" && !!b && (b.state === "waiting" || b.state === "following");
      },
      connected: () => this.effects(this.core.peerConnected(nowMs())),
      mayAccept: () => this.core.role === "primary",
      message: (msg, from) => this.onPeerMessage(msg, from),
      disconnected: () => this.core.peerDisconnected(),
      refusedForGood: (reason) => this.effects(this.core.halt(`the primary refused this backup: ${reason}`)),
    });
    this.beats = new PeerBeats(this.log, options.nodeId, options.peerToken, { beat: (nodeId, epoch) => this.core.peerBeat(nodeId, epoch, nowMs()) }, nowMs);
    this.consoles = new ConsoleServer(this.log, {
      opened: (session) => this.effects(this.core.consoleOpened(session)),
      closed: (session) => this.core.consoleClosed(session),
      message: (session, msg) => this.effects(msg.type === "attach" ? this.core.consoleAttach(session, msg.clientId, msg.offset) : this.core.consoleInput(session, msg.seq, msg.data, msg.keys === true)),
    });
    this.server = new NodeServer({
      host: options.host,
      port: options.port,
      consoleToken: options.token,
      peerToken: options.peerToken,
      ...(options.tls ? { tls: options.tls } : {}),
      status: () => this.status(),
      screen: async () => {
        const s = await this.machine?.screen();
        return s && screenToJson(s);
      },
      screenPng: () => this.screenPng(),
      webPage: () => ({ title: `lockstep ${options.nodeId}`, nodes: [this.url], demo: false }),
      metrics: () => registry.metrics(),
      onPeer: (ws, req) => this.link.accept(ws, req),
      onConsole: (ws) => this.consoles.accept(ws),
      onRejected: (reason, remote) => this.log.warn({ remote }, `connection refused: ${reason}`),
    });
  }

  get role(): "primary" | "backup" | "halted" {
    return this.core.role;
  }

  /** Where this node's endpoints are (status, console, peer), as another host would name it. */
  get url(): string {
    const h = this.options.host;
    return `${this.options.tls ? "https" : "http"}://${h === "0.0.0.0" || h === "::" || h === "" ? hostname() : h.includes(":") ? `[${h}]` : h}:${this.port}`;
  }

  get port(): number {
    return this.server.port;
  }

  get peerBytesSent(): number {
    return this.link.bytesSent;
  }

  get peerBytesReceived(): number {
    return this.link.bytesReceived;
  }

  status(): Record<string, unknown> {
    const m = this.machine;
    return {
      nodeId: this.options.nodeId,
      url: this.url,
      ...this.core.status(),
      peerUrl: this.core.role === "backup" ? (this.options.connect?.replace(/^ws/, "http") ?? null) : (this.core.backupUrl ?? null),
      slice: m?.slice ?? 0,
      instructions: m?.icount ?? 0,
      guestMs: Math.round(m?.counters.guestMs ?? 0),
      digestsVerified: this.core.role === "backup" ? (m?.counters.digestsVerified ?? 0) : null,
      joinsServed: this.joins.length,
      lastJoin: this.joins.at(-1) ?? null,
      disk: this.disk.status(),
      netLink: this.netLink?.status() ?? null,
      peerBytesSent: this.peerBytesSent,
      peerBytesReceived: this.peerBytesReceived,
      beats: { sent: this.beats.sent, received: this.beats.received, refused: this.beats.refused, stale: this.beats.stale },
      uptimeMs: Math.round(performance.now() - this.startedAtMs),
      memory: { ...processMemoryMiB(), machine: this.machineMemory ?? null },
      timeline: this.timeline.recent(50),
    };
  }

  // ---------------------------------------------------------------- starting

  static async startPrimary(options: NodeOptions): Promise<LockstepNode> {
    const current = await options.arbiter.current();
    if (current === undefined) throw arbiterUnreachable();
    await refuseIfPairRunning(options.arbiter, options.ca);
    const node = new LockstepNode({ ...options, arbiterId: await arbiterIdentity(options.arbiter) });
    const epoch = current + 1;
    await claimAtStart(options.arbiter, epoch, options.nodeId, node.log);
    const { header, init } = await primaryMachine(options.image ?? "linux", options.memoryMiB, (config) => node.disk.openAtPowerOn(config, options.disk, options.sharedDir));
    node.header = header;
    node.machine = await MachineThread.start(init, node.machineEvents());
    await node.listen();
    await options.arbiter.announce(options.nodeId, node.url);
    node.effects(node.core.startPrimary(epoch, header, node.machine.slice));
    node.startHolding();
    node.renewHold();
    node.log.info({ epoch, port: node.port, image: header.machine.name, web: `${node.url}/` }, "primary started");
    return node;
  }

  static async startBackup(options: NodeOptions): Promise<LockstepNode> {
    const node = new LockstepNode({ ...options, arbiterId: await arbiterIdentity(options.arbiter) });
    await node.listen();
    node.core.advertise(node.url);
    node.effects(node.core.startBackup());
    await options.arbiter.announce(options.nodeId, node.url);
    node.beats.dialing(options.connect!);
    node.link.dial(options.connect!, options.peerToken, options.ca);
    node.startHolding();
    node.ticker = setInterval(() => node.tick(), tickIntervalMs);
    node.log.info({ port: node.port, primary: options.connect, web: `${node.url}/` }, "backup started");
    return node;
  }

  /**
   * The screen in a VBE graphics mode as a PNG: one picture at a time, shared by every viewer asking
   * within `pictureReuseMs` (each costs the machine thread a copy of the framebuffer and zlib's pool
   * a compression; this thread only waits).
   */
  private picture: { atMs: number; png: Promise<Buffer | null | undefined> } | undefined;
  private screenPng(): Promise<Buffer | null | undefined> {
    const now = performance.now();
    if (this.picture && now - this.picture.atMs < pictureReuseMs) return this.picture.png;
    const machine = this.machine;
    const png = machine ? machine.graphics().then((g) => (g ? encodePng(g) : g)) : Promise.resolve(undefined);
    this.picture = { atMs: now, png };
    return png;
  }

  /** HTTP (status, consoles, the logging channel) and, on the same port number, heartbeat datagrams. */
  private async listen(): Promise<void> {
    await this.server.listen();
    await this.beats.bind(this.options.host, this.port);
  }

  /** What the machine thread reports, for the core. */
  private machineEvents(): MachineEvents {
    return {
      batch: (b) => this.effects(this.core.machineBatch(b, nowMs())),
      executed: (slice) => this.effects(this.core.machineExecuted(slice)),
      checkpoint: (checkpoint, pauseMs) => {
        this.checkpoint = { checkpoint, pauseMs };
        this.effects(this.core.checkpointTaken(nowMs()));
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
      // the CD's sha256 is checked when the machine is loaded: hash it here without blocking this
      // thread (an ISO may take seconds; the heartbeats go on meanwhile)
      const cd = /(?:^|\+)cdrom:(.+)$/.exec(this.options.imageOverride ?? "")?.[1];
      if (cd && header.machine.files.cdrom && existsSync(cd)) await prehashFile(cd);
      const machine = await MachineThread.start(backupMachine(header, this.options.imageOverride, checkpoint), this.machineEvents());
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
          this.link.send(e.message);
          break;
        case "beat":
          this.beats.send(e.to, e.epoch);
          break;
        case "peer-accept":
        case "peer-refuse":
          break; // handled where the hello arrived (onPeerMessage)
        case "claim-epoch":
          this.claim(e.epoch, e.supersedes);
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
          if (e.keys) this.machine?.keys(e.data, e.source);
          else this.machine?.input(e.data, e.source);
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
          this.renewHold();
          break;
        case "net-send":
          this.netLink?.send(e.frames);
          break;
        case "machine-net":
          this.machine?.net(e.frames);
          break;
        case "net-takeover": {
          const mac = this.header?.machine.nic?.mac;
          if (mac && e.ip) this.netLink?.sendWhenUp([gratuitousArp(macBytes(mac), e.ip)]);
          break;
        }
        case "disk-submit":
          this.disk.submit(e.requests, e.slice);
          break;
        case "disk-release":
          this.disk.release(e.slice, e.untilMs);
          break;
        case "send-checkpoint":
          this.sendCheckpoint(e);
          break;
        case "console-send":
          this.consoles.send(e.session, e.message);
          break;
        case "console-close":
          this.consoles.close(e.session, e.code, e.reason);
          break;
      }
    }
    this.observeTimeline();
  }

  /** Notes a change of role, epoch or state in the timeline (the web view shows it). */
  private observeTimeline(): void {
    const c = this.core;
    const s = c.primary?.state ?? c.backup?.state ?? c.role;
    // wall time, for people reading the timeline (the guest never sees it)
    this.timeline.observe({ role: c.role, epoch: c.epoch, state: s, backup: c.primary?.backupId ?? null, haltReason: c.haltReason ?? null }, Date.now());
  }

  private becamePrimary(epoch: number, reissue: DiskRequest[]): void {
    this.disk.attach(this.machine!, reissue, (reason) => this.effects(this.core.diskStall(reason, nowMs())), { node: this.options.nodeId, epoch: () => this.core.epoch });
    const net = this.options.net;
    if (net && net.mode !== "none" && !this.header?.machine.nic) this.log.warn({ net: net.mode }, "--net is ignored: the machine has no network card");
    if (net && net.mode !== "none" && this.header?.machine.nic && !this.netLink) {
      this.netLink = makeNetLink(net, { logger: this.options.logger, onFrames: (frames) => this.effects(this.core.netIn(frames)), ...(this.options.sharedDir ? { stateDir: this.options.sharedDir } : {}) });
      this.netLink?.start();
    }
    this.ticker ??= setInterval(() => this.tick(), tickIntervalMs);
    if (this.takeoverStartMs !== undefined) this.log.warn({ epoch, replayMs: Math.round(performance.now() - this.takeoverStartMs) }, "live after the takeover");
    this.emit("live", epoch);
  }

  private sendCheckpoint(at: { first: number; console: number; inputs: Array<[string, number]>; consoleTail: Uint8Array }): void {
    const taken = this.checkpoint;
    const peer = this.link.connection;
    if (!taken || !peer) return void this.effects(this.core.checkpointFailed());
    const epoch = this.core.epoch;
    const slice = taken.checkpoint.driver.slice;
    void sendCheckpoint(taken.checkpoint, { epoch, ...at }, peer, () => this.link.isPeer(peer) && this.core.role === "primary", (n) => (this.link.bytesSent += n)).then((r) => {
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
    this.link.drop();
    const location = this.options.disk ?? this.header?.disk?.location;
    if (this.header?.disk) {
      if (!location) return this.effects(this.core.halt("the primary's log names no disk location: pass --disk"));
      if (!(await this.disk.openAtTakeover(location, () => this.core.role === "halted"))) return;
    }
    this.effects(this.core.readyToGoLive());
  }

  private tick(): void {
    this.effects(this.core.tick(nowMs(), this.machine?.slice ?? 0));
  }

  private claim(epoch: number, supersedes?: string): void {
    this.options.arbiter.claim(epoch, this.options.nodeId, supersedes).then((won) => {
      if (won === undefined && performance.now() - this.claimWaitSaidMs > 2000) {
        this.claimWaitSaidMs = performance.now();
        this.log.warn({ epoch }, "no answer from the arbiter yet (unreachable, or another node's hold has not run out): nobody goes live until it answers");
      }
      const answer = () => this.effects(this.core.arbiterAnswer(epoch, won));
      if (won === undefined) setTimeout(answer, 100);
      else answer();
    });
  }

  /**
   * Leased arbiter (etcd): the primary renews its hold on its epoch several times per lease; the
   * core lets output, disk writes and the guest go on only while the last renewal lasts (counted
   * from when it was asked, less a tenth for clock drift), and halts on a newer epoch.
   */
  private startHolding(): void {
    if (!this.options.arbiter.hold) return;
    this.holdTimer = setInterval(() => {
      this.renewHold();
      this.askStandbys();
    }, holdRenewMs);
  }

  /**
   * Standbys (etcd): a primary that has run without a backup for `standbyAfterMs` posts that it
   * wants one (again every few seconds, in case its lease was renewed under a new id); once
   * protected it clears the post. One standby takes it and joins (StandbyBoard).
   */
  private askStandbys(): void {
    const arbiter = this.options.arbiter;
    if (!isStandbyBoard(arbiter) || this.core.role !== "primary") return;
    const state = this.core.primary?.state;
    const now = performance.now();
    if (state === "protected") {
      this.unprotectedSinceMs = undefined;
      if (this.backupWantedAtMs !== undefined) {
        this.backupWantedAtMs = undefined;
        void arbiter.backupFound();
      }
      return;
    }
    if (state !== "unprotected") return; // joining: a backup is on its way; claiming: wait for the arbiter
    this.unprotectedSinceMs ??= now;
    if (now - this.unprotectedSinceMs < standbyAfterMs || now - (this.backupWantedAtMs ?? -Infinity) < 2000) return;
    this.backupWantedAtMs = now;
    this.log.info({ unprotectedMs: Math.round(now - this.unprotectedSinceMs) }, "unprotected: asking the standbys for a backup");
    void arbiter.wantBackup({ primary: this.options.nodeId, url: this.url, epoch: this.core.epoch });
  }

  private renewHold(): void {
    const arbiter = this.options.arbiter;
    if (!arbiter.hold || this.core.role !== "primary" || this.holdInFlight || this.closed) return;
    this.holdInFlight = true;
    const askedMs = nowMs();
    const epoch = this.core.epoch;
    arbiter
      .hold(this.options.nodeId, epoch)
      .then((hold) => {
        this.holdInFlight = false;
        if (this.closed) return;
        if (hold?.type === "held") this.effects(this.core.arbiterHeld(askedMs + hold.leaseMs * 0.9, nowMs(), epoch));
        else if (hold?.type === "newer") this.effects(this.core.arbiterNewer(hold.epoch));
        else if (hold?.type === "forgotten" && askedMs - this.forgottenSaidMs > 10_000) {
          this.forgottenSaidMs = askedMs;
          this.log.error({ epoch, arbiterEpoch: hold.epoch }, "the arbiter's newest epoch is older than this primary's (was its data lost?): output waits until an epoch is held again");
        }
      })
      .catch((e: unknown) => {
        this.holdInFlight = false;
        this.log.error({ err: e }, "renewing the hold failed");
      });
  }

  private halted(reason: string): void {
    clearInterval(this.holdTimer);
    void this.machine?.kill();
    // a halted node never touches the shared disk again: the new primary owns it
    this.disk.stop();
    void this.netLink?.close();
    this.link.terminate();
    this.link.stopDialing();
    this.log.error({ reason }, "halted");
    this.observeTimeline();
    this.emit("halted", reason);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.memoryTimer);
    clearInterval(this.ticker);
    clearInterval(this.holdTimer);
    this.link.close();
    this.beats.close();
    await this.machine?.stop();
    this.link.terminate();
    await this.server.close();
    await this.disk.close();
    await this.netLink?.close();
  }

  // ---------------------------------------------------------------- peer

  /**
   * Primary: a message on a connection that is not the peer's is a candidate's; only a hello the core
   * accepts makes it the peer (it replaces the current one), one it refuses is closed.
   */
  private onPeerMessage(msg: PeerMessage, from: WebSocket): void {
    const candidate = this.core.role === "primary" && !this.link.isPeer(from);
    const effects = this.core.peerMessage(msg, nowMs(), candidate, this.machine?.slice ?? 0);
    if (candidate) {
      const refused = effects.find((e) => e.type === "peer-refuse");
      if (refused) {
        this.effects(effects); // the refusal's log line
        this.link.refuse(from, refused.reason, refused.fatal === true);
        return;
      }
      if (effects.some((e) => e.type === "peer-accept")) this.link.adopt(from);
    }
    this.effects(effects);
  }
}
