/**
 * NodeCore: everything one lockstep node decides, sans IO (etcd-io/raft's Step/Ready). The runtime
 * feeds it events — peer messages, what the machine thread reported, console sessions, arbiter
 * answers, the time — and carries out the effects it returns. The seeded simulation drives this
 * same class with a scripted machine, so every decision below runs under its faults.
 *
 * It owns the node's role and epoch (through a PrimaryCore or a BackupCore), the console stream,
 * the console sessions (ConsoleSessions: exactly-once input), the output rule's release of console bytes,
 * input acks and disk writes, the machine's gate (flow and lag control, a failing disk), when the
 * machine logs progress, which entries a following machine gets, checkpoint requests and the join
 * of a backup from a checkpoint, and the steps of a takeover.
 *
 * Network (VMware FT §2.2 for a NIC): frames the guest sends are output like console bytes, held
 * until their slice is releasable; frames from the host go to a primary's machine only (it logs
 * them). At takeover the new primary cannot know which frames of the last slices the dead one had
 * sent. It does not send them again: what was lost the guest's TCP retransmits on its own timer,
 * and duplicates were measured to break flows in passt (it rewinds its sequence tracking on an old
 * segment and resets or stalls the connection). It announces the guest's address (gratuitous ARP),
 * so that a bridge moves the guest's MAC to its port.
 *
 * Invariants:
 *   - Output (console bytes, network frames, input acks, disk writes) of slice k is released only up to the
 *     PrimaryCore's releasable slice: with a backup, what it acknowledged as complete. Disk writes,
 *     moreover, only start while the PrimaryCore's disk lease lasts (the backup cannot have gone live).
 *   - Console input (client, seq) goes to the machine at most once per primary; what reached the
 *     guest is known from the log (applied entries), so a resend is never applied twice.
 *   - A following machine receives the log in order, each entry once.
 *
 * Over 400 lines on purpose: role changes, release, the gate and takeover read each other's state at
 * every event, and one class keeps that state in one place (the protocol rules themselves live in
 * PrimaryCore, BackupCore, ConsoleStream and ConsoleSessions).
 */
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { macBytes } from "../../emulator/machine-config.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { MachineBatch, NetSlice } from "../../hypervisor/machine-thread/machine-protocol.js";
import { consoleTailBytesMax, type PeerMessage } from "../wire/peer-messages.js";
import { BackupCore } from "./backup-core.js";
import { ConsoleSessions, type ConsoleEffect } from "./console-sessions.js";
import { ConsoleStream } from "./console-stream.js";
import { LatencySamples } from "./latency-samples.js";
import type { RetainedLog } from "./retained-log.js";
import { defaultPrimaryConfig, PrimaryCore, type CoreEffect, type PrimaryConfig } from "./primary-core.js";

export interface NodeConfig {
  nodeId: string;
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  /** Channel silence tolerated while the peer's heartbeat datagrams arrive (default 5 s; see PeerHeard). */
  channelTimeoutMs?: number;
  /** Backup: join from a checkpoint of the running primary instead of replaying from power-on. */
  join?: boolean;
  /** Backup: an id of this run (unique per process start; the primary tells a restart by it). */
  run?: string;
  /** Overrides of the primary's bounds (the simulation uses small ones). */
  primary?: Partial<Omit<PrimaryConfig, "nodeId" | "heartbeatIntervalMs" | "failureTimeoutMs" | "channelTimeoutMs">>;
  /** Console bytes kept for clients that resume (default 1 MiB). */
  consoleRetainBytes?: number;
  /** The arbiter's identity (Arbiter.identity): a backup says it in its hello, a primary refuses another. */
  arbiterId?: string;
  /**
   * The arbiter has leases (etcd): a primary runs its guest and releases output and disk writes only
   * while its hold on its epoch lasts (`arbiterHeld`), and halts when told of a newer epoch.
   */
  arbiterHold?: boolean;
}


export type NodeEffect =
  | Exclude<CoreEffect, { type: "checkpoint-wanted" }>
  /** Backup: build the machine from the primary's header (power-on) or from a received checkpoint. */
  | { type: "start-machine"; header: LogHeader; checkpoint?: { bytes: Uint8Array; slice: number } }
  | { type: "machine-entries"; entries: LogEntry[] }
  | { type: "machine-checkpoint" }
  /** gate: the guest may run; progress: log progress promptly (a backup follows). */
  | { type: "machine-gate"; open: boolean; progress: boolean }
  /** Backup won the epoch: make the node ready to go live (open the disk), then call `readyToGoLive`. */
  | { type: "prepare-takeover"; epoch: number }
  | { type: "machine-go-live" }
  /** Now the primary of `epoch`: set up the disk path and re-issue `reissue`. */
  | { type: "became-primary"; epoch: number; reissue: DiskRequest[] }
  | { type: "disk-submit"; requests: DiskRequest[]; slice: number }
  /** Disk writes of slices through `slice` may go to the disk, if they start before `untilMs` (the disk lease). */
  | { type: "disk-release"; slice: number; untilMs: number }
  /** Compress and send the checkpoint just taken (the log goes on with entry `first`). */
  | { type: "send-checkpoint"; first: number; console: number; inputs: Array<[string, number]>; consoleTail: Uint8Array }
  /** Accept (replace the current peer with) or refuse a connection that said hello; `fatal`: it can never be accepted (the backup should stop). */
  /** Frames the guest sent that the output rule lets out (to the host link). */
  | { type: "net-send"; frames: Uint8Array[] }
  /** Frames from the host for the machine's NIC (primary). */
  | { type: "machine-net"; frames: Uint8Array[] }
  /** Took over: announce the guest's IPv4 address (`ip`, when known) from its MAC on the host link. */
  | { type: "net-takeover"; ip?: Uint8Array }
  | { type: "peer-accept" }
  | { type: "peer-refuse"; reason: string; fatal?: boolean }
  | ConsoleEffect;

/**
 * A joining backup that got no part of a checkpoint for this long asks again. (A primary still
 * taking or sending one ignores the question, so a slow checkpoint is never started over.)
 */
export const checkpointRetryMs = (failureTimeoutMs: number) => failureTimeoutMs * 2;

export interface NetCoreCounters {
  /** Frames the guest sent that left (released by the output rule). */
  framesOut: number;
  /** Frames from the host handed to the machine. */
  framesIn: number;
  /** Frames from the host dropped because this node does not run the guest (a backup, a halted node). */
  framesInDropped: number;
}

interface IncomingCheckpoint {
  first: number;
  slice: number;
  console: number;
  inputs: Array<[string, number]>;
  consoleTail: Uint8Array | undefined;
  parts: Array<Uint8Array | undefined>;
}

export class NodeCore {
  role: "primary" | "backup" | "halted" = "backup";
  haltReason: string | undefined;
  primary: PrimaryCore | undefined;
  backup: BackupCore | undefined;
  readonly stream: ConsoleStream;
  /** Output rule delay: output produced -> released (ms), while protected. */
  readonly outputDelay = new LatencySamples();
  /** Backup lag: a slice run by the primary -> the backup reported it executed (ms). */
  readonly backupLag = new LatencySamples();
  private header: LogHeader | undefined;
  private readonly consoles: ConsoleSessions;
  /** The machine is built (backup) or running (primary). */
  private machineReady = false;
  private machineStarting = false;
  private machineSlice = 0;
  private incoming: IncomingCheckpoint | undefined;
  /** Joining: since when this backup has waited for (the next part of) its checkpoint. */
  private checkpointWaitSinceMs: number | undefined;
  private takingOver: number | undefined;
  private diskStalled = false;
  private gate = { open: false, progress: false };
  /** Host ms a running primary's guest was held by flow or lag control (or a failing disk), in total. */
  private heldMs = 0;
  private heldSinceMs: number | undefined;
  /** With arbiterHold: the primary's hold on its epoch lasts until then (host ms). */
  private holdUntilMs = Number.NEGATIVE_INFINITY;
  private holdLapsed = false;
  /** A checkpoint was dropped while the hold had run out: take another once it is renewed. */
  private checkpointAfterHold = false;
  /** A backup is joining from a checkpoint: when it asked, and the guest's held time then. */
  private joinStart: { atMs: number; heldMs: number } | undefined;
  /** The last join from a checkpoint: how long until protected, and how long the guest was held meanwhile (ms). */
  lastJoin: { ms: number; guestHeldMs: number } | undefined;
  private outputPending: Array<{ end: number; atMs: number; protected: boolean }> = [];
  /** Primary: frames the guest sent, waiting for the output rule, oldest slice first. */
  private netPending: NetSlice[] = [];
  /** The guest's IPv4 address, as its frames say (ARP sender, IPv4 source from its MAC). */
  private guestIp: Uint8Array | undefined;
  private guestMac: Uint8Array | undefined;
  readonly net: NetCoreCounters = { framesOut: 0, framesIn: 0, framesInDropped: 0 };
  /** Host ms of the newest event that carried the time (for decisions taken on events without it). */
  private nowMs = 0;
  private lastTickMs: number | undefined;
  private longestTickGapMs = 0;

  private advertisedUrl: string | undefined;

  /** Where this node serves its status and console: a backup says it in its hello. */
  advertise(url: string): void {
    this.advertisedUrl = url;
    this.backup?.advertise(url);
  }

  /** The other node's status and console address, if known (the primary's backup as its hello said). */
  get backupUrl(): string | undefined {
    return this.primary?.backupUrl;
  }

  constructor(private readonly config: NodeConfig) {
    this.stream = new ConsoleStream(config.consoleRetainBytes);
    this.consoles = new ConsoleSessions(this.stream);
  }

  get epoch(): number {
    return this.primary?.epoch ?? this.backup?.epoch ?? 0;
  }

  private primaryConfig(): PrimaryConfig {
    const c = this.config;
    return { ...defaultPrimaryConfig, ...c.primary, nodeId: c.nodeId, heartbeatIntervalMs: c.heartbeatIntervalMs, failureTimeoutMs: c.failureTimeoutMs, channelTimeoutMs: c.channelTimeoutMs ?? defaultPrimaryConfig.channelTimeoutMs };
  }

  // ---------------------------------------------------------------- starting

  /** A primary at power-on: epoch won, machine built and sitting at its first boundary. */
  startPrimary(epoch: number, header: LogHeader, slice: number): NodeEffect[] {
    this.header = header;
    this.machineReady = true;
    this.machineSlice = slice;
    return this.becomePrimary(epoch, undefined, []);
  }

  /** A backup: wait for a primary. */
  startBackup(): NodeEffect[] {
    const c = this.config;
    this.backup = new BackupCore({ nodeId: c.nodeId, heartbeatIntervalMs: c.heartbeatIntervalMs, failureTimeoutMs: c.failureTimeoutMs, channelTimeoutMs: this.primaryConfig().channelTimeoutMs, retention: this.primaryConfig().retention, ...(c.join ? { join: true } : {}), ...(c.arbiterId !== undefined ? { arbiterId: c.arbiterId } : {}), ...(c.run !== undefined ? { run: c.run } : {}), ...(this.advertisedUrl !== undefined ? { url: this.advertisedUrl } : {}) });
    this.role = "backup";
    return [];
  }

  private becomePrimary(epoch: number, log: RetainedLog | undefined, reissue: DiskRequest[]): NodeEffect[] {
    const core = new PrimaryCore(this.primaryConfig(), epoch, this.header!, log);
    core.noteSlice(this.machineSlice);
    this.primary = core;
    this.backup = undefined;
    this.role = "primary";
    this.consoles.resetInput();
    const effects: NodeEffect[] = [{ type: "became-primary", epoch, reissue }];
    effects.push(...this.release(), ...this.gateEffects());
    return effects;
  }

  // ---------------------------------------------------------------- the machine

  /** What the machine thread reported: entries, output and disk requests of the slices it ran. */
  machineBatch(b: MachineBatch, nowMs: number): NodeEffect[] {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (this.role === "halted") return [];
    this.machineSlice = Math.max(this.machineSlice, b.slice);
    for (const n of b.net) if (n.dir === "out") this.learnGuestIp(n.frames);
    if (this.role === "backup") {
      for (const o of b.output) this.stream.append(o.slice, o.data);
      // What a backup executed is all released when it takes over (it goes on unprotected), so
      // it counts as released now: the stream then keeps only its retained tail.
      this.stream.release(b.slice);
      return [];
    }
    const core = this.primary!;
    for (const e of b.entries) {
      core.append(e);
      if ((e.kind === "serial" || e.kind === "keys") && e.source) {
        this.stream.inputApplied(e.slice, e.source.client, e.source.seq);
        this.consoles.inputApplied(e.source);
      }
    }
    core.noteSlice(b.slice, b.atWallMs);
    for (const o of b.output) {
      this.stream.append(o.slice, o.data);
      this.outputPending.push({ end: this.stream.end, atMs: b.atWallMs, protected: core.state === "protected" });
    }
    for (const n of b.net) if (n.dir === "out") this.netPending.push(n);
    const effects: NodeEffect[] = b.disk.map((d) => ({ type: "disk-submit" as const, requests: d.requests, slice: d.slice }));
    // the log (with the progress entry the machine wrote after output) goes out at once: the output rule
    effects.push(...this.core(core.flush()), ...this.release(nowMs), ...this.gateEffects());
    return effects;
  }

  /** Frames from the host link: for the machine's NIC if this node runs the guest; dropped otherwise. */
  netIn(frames: Uint8Array[]): NodeEffect[] {
    if (this.role !== "primary" || !this.machineReady) {
      this.net.framesInDropped += frames.length;
      return [];
    }
    this.net.framesIn += frames.length;
    return [{ type: "machine-net", frames }];
  }

  private learnGuestIp(frames: Uint8Array[]): void {
    const nic = this.header?.machine?.nic;
    if (!nic) return;
    const mac = (this.guestMac ??= macBytes(nic.mac));
    for (const f of frames) {
      // the source MAC is the guest's; an ARP sender or IPv4 source address other than 0.0.0.0 is its own
      if (f.length < 34 || mac.some((b, i) => f[6 + i] !== b)) continue;
      const type = (f[12]! << 8) | f[13]!;
      const ip = type === 0x0806 && f.length >= 42 ? f.subarray(28, 32) : type === 0x0800 ? f.subarray(26, 30) : undefined;
      if (ip && ip.some((b) => b !== 0)) this.guestIp = ip.slice();
    }
  }

  /** Backup: the machine executed the log through `slice` and waits for more. */
  machineExecuted(slice: number): NodeEffect[] {
    this.machineSlice = Math.max(this.machineSlice, slice);
    if (this.role !== "backup" || !this.backup) return [];
    return this.core(this.backup.executedThrough(slice));
  }

  /** The machine could not queue an input: the client resends it. */
  inputRefused(source: { client: string; seq: number }): void {
    this.consoles.inputRefused(source);
  }

  /** Backup: the machine is built (from power-on or the checkpoint) and follows from here. */
  machineStarted(slice: number): NodeEffect[] {
    this.machineStarting = false;
    if (this.role !== "backup" || !this.backup) return [];
    this.machineReady = true;
    this.machineSlice = slice;
    const c = this.incoming;
    if (this.backup.join && c) {
      this.incoming = undefined;
      this.backup.checkpointReceived(c.first, c.slice);
      this.stream.startAt(c.console, c.inputs, c.consoleTail);
    }
    const joined = this.backup.checkpointed;
    const msg = joined ? "checkpoint received: following the log from there" : "backup machine ready: following the log";
    const effects: NodeEffect[] = [{ type: "log", level: "info", msg, fields: { slice, epoch: this.backup.epoch, ...(joined ? { first: this.backup.log.base } : {}) } }];
    effects.push(...this.passEntries());
    if (this.takingOver !== undefined) effects.push({ type: "prepare-takeover", epoch: this.takingOver });
    return effects;
  }

  /** The disk backend failed (reason) or works again (undefined): the guest waits while it fails. */
  diskStall(reason: string | undefined, nowMs: number): NodeEffect[] {
    this.nowMs = Math.max(this.nowMs, nowMs);
    this.diskStalled = reason !== undefined;
    return this.gateEffects();
  }

  private gateEffects(): NodeEffect[] {
    const core = this.primary;
    const gate = this.role === "primary" && core ? { open: core.mayRun(this.machineSlice, this.nowMs) && !this.diskStalled && this.holding(), progress: core.state === "protected" || core.state === "joining" } : { open: false, progress: false };
    if (gate.open === this.gate.open && gate.progress === this.gate.progress) return [];
    const held = this.role === "primary" && core !== undefined && !gate.open;
    if (held && this.heldSinceMs === undefined) this.heldSinceMs = this.nowMs;
    else if (!held && this.heldSinceMs !== undefined) {
      this.heldMs += this.nowMs - this.heldSinceMs;
      this.heldSinceMs = undefined;
    }
    this.gate = gate;
    return [{ type: "machine-gate", ...gate }];
  }

  /** Backup: new entries go to the machine in order, each once. */
  private passEntries(): NodeEffect[] {
    const b = this.backup;
    if (!b || !this.machineReady || this.role !== "backup") return [];
    const fresh = b.takeForMachine();
    if (fresh.length === 0) return [];
    for (const e of fresh) if ((e.kind === "serial" || e.kind === "keys") && e.source) this.stream.inputApplied(e.slice, e.source.client, e.source.seq);
    return [{ type: "machine-entries", entries: fresh }];
  }

  // ---------------------------------------------------------------- output rule

  /**
   * Releases what the output rule allows: console bytes, input acks, disk writes. `nowMs` (when the
   * release follows an ack or a batch) times the output-rule delay of what leaves.
   */
  private release(nowMs?: number): NodeEffect[] {
    const core = this.primary;
    if (!core || this.role !== "primary") return [];
    const releasable = core.releasableSlice();
    const holdUntilMs = this.config.arbiterHold ? this.holdUntilMs : Number.POSITIVE_INFINITY;
    const effects: NodeEffect[] = [{ type: "disk-release", slice: releasable, untilMs: Math.min(core.diskWritableUntilMs(), holdUntilMs) }];
    // without a hold on its epoch nothing leaves: a newer primary may exist that this one cannot see
    if (this.nowMs >= holdUntilMs) return effects;
    const frames: Uint8Array[] = [];
    while (this.netPending.length > 0 && this.netPending[0]!.slice <= releasable) frames.push(...this.netPending.shift()!.frames);
    if (frames.length > 0) {
      this.net.framesOut += frames.length;
      effects.push({ type: "net-send", frames });
    }
    const due = this.stream.release(releasable);
    while (this.outputPending.length > 0 && this.outputPending[0]!.end <= this.stream.released) {
      const o = this.outputPending.shift()!;
      if (o.protected && nowMs !== undefined) this.outputDelay.add(nowMs - o.atMs);
    }
    effects.push(...this.consoles.released(due));
    return effects;
  }

  // ---------------------------------------------------------------- console sessions

  consoleOpened(session: number): NodeEffect[] {
    return this.consoles.open(session, { role: this.role, epoch: this.epoch });
  }

  consoleClosed(session: number): void {
    this.consoles.close(session);
  }

  consoleAttach(session: number, clientId: string, offset: number): NodeEffect[] {
    return this.role === "primary" ? this.consoles.attach(session, clientId, offset) : [];
  }

  consoleInput(session: number, seq: number, data: Uint8Array, keys = false): NodeEffect[] {
    return this.role === "primary" ? this.consoles.input(session, seq, data, keys) : [];
  }

  // ---------------------------------------------------------------- peer

  /** The backup's connection to the primary is up. */
  peerConnected(nowMs: number): NodeEffect[] {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (!this.backup || this.role !== "backup") return [];
    this.checkpointWaitSinceMs = nowMs;
    return this.core(this.backup.connected(nowMs));
  }

  /** A heartbeat datagram (authenticated) from `nodeId`: the peer is alive, whatever its channel does. */
  peerBeat(nodeId: string, epoch: number, nowMs: number): void {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (this.role === "primary") this.primary?.beat(nodeId, epoch, nowMs);
    else if (this.role === "backup") this.backup?.beat(nodeId, epoch, nowMs);
  }

  /** Primary: the backup's connection closed (acks received stand). */
  peerDisconnected(): void {
    this.primary?.peerDisconnected();
  }

  /**
   * A message from the peer. `candidate`: it came on a connection that is not (yet) the peer's; only
   * a hello can make it the peer (a stray connection cannot cut off the backup).
   */
  peerMessage(msg: PeerMessage, nowMs: number, candidate = false, machineSlice = 0): NodeEffect[] {
    this.nowMs = Math.max(this.nowMs, nowMs);
    // what the machine executed by now (read from shared memory): an ack carries it fresh
    this.machineSlice = Math.max(this.machineSlice, machineSlice);
    if (this.role === "halted") return [];
    if (this.primary && this.role === "primary") {
      const core = this.primary;
      const effects: NodeEffect[] = [];
      if (candidate) {
        if (msg.type !== "hello") return [{ type: "log", level: "warn", msg: "peer frame before hello ignored", fields: { type: msg.type } }];
        const ours = this.config.arbiterId;
        if (ours !== undefined && msg.arbiter !== undefined && msg.arbiter !== ours) {
          // each side would claim epochs where the other cannot see them: both could go live
          const reason = `another arbiter (backup ${msg.arbiter.slice(0, 8)}, primary ${ours.slice(0, 8)}): both nodes must name the same --arbiter (or --shared-dir)`;
          return [{ type: "log", level: "warn", msg: "backup refused: another arbiter", fields: { backup: msg.nodeId, theirs: msg.arbiter, ours } }, { type: "peer-refuse", reason, fatal: true }];
        }
        const stepped = this.core(core.step(msg, nowMs));
        if (core.backupId !== msg.nodeId) return [...stepped, { type: "peer-refuse", reason: "hello rejected" }];
        effects.push({ type: "peer-accept" }, ...stepped);
      } else {
        const before = core.state;
        effects.push(...this.core(core.step(msg, nowMs)));
        if (msg.type === "ack") this.sampleLag();
        if (before === "joining" && core.state === "protected" && this.joinStart) {
          this.lastJoin = { ms: Math.round(nowMs - this.joinStart.atMs), guestHeldMs: Math.round(this.guestHeldMs() - this.joinStart.heldMs) };
          this.joinStart = undefined;
        }
      }
      effects.push(...this.release(nowMs), ...this.gateEffects());
      return effects;
    }
    const b = this.backup!;
    b.setExecuted(this.machineSlice);
    const effects = this.core(b.step(msg, nowMs));
    if (msg.type === "checkpoint" && msg.epoch === b.epoch) effects.push(...this.checkpointPart(msg, nowMs));
    else if (msg.type === "log") effects.push(...this.passEntries());
    return effects;
  }

  private sampleLag(): void {
    const sample = this.primary?.takeLagSample();
    if (sample !== undefined && this.primary!.state === "protected") this.backupLag.add(sample);
  }

  /** Backup, joining: collects the checkpoint's parts; when whole, the machine is built from it. */
  private checkpointPart(msg: Extract<PeerMessage, { type: "checkpoint" }>, nowMs: number): NodeEffect[] {
    if (!this.backup!.join || this.backup!.checkpointed || this.machineStarting || this.machineReady) return [];
    if (!this.header) return this.halt("checkpoint refused: it arrived before the log header");
    this.checkpointWaitSinceMs = nowMs;
    let c = this.incoming;
    if (!c || c.first !== msg.first || c.slice !== msg.slice || c.parts.length !== msg.parts) {
      // the first part, or a new checkpoint started: take that one
      c = this.incoming = { first: msg.first, slice: msg.slice, console: msg.console, inputs: msg.inputs, consoleTail: undefined, parts: new Array<Uint8Array | undefined>(msg.parts).fill(undefined) };
    }
    c.parts[msg.part] = msg.data;
    if (msg.consoleTail) c.consoleTail = msg.consoleTail;
    if (c.parts.some((p) => !p)) return [];
    const total = c.parts.reduce((n, p) => n + p!.length, 0);
    const bytes = new Uint8Array(total);
    let at = 0;
    for (const p of c.parts) {
      bytes.set(p!, at);
      at += p!.length;
    }
    c.parts = [];
    this.machineStarting = true;
    return [
      { type: "log", level: "info", msg: "checkpoint arrived: building the machine from it", fields: { slice: c.slice, bytes: total, first: c.first } },
      { type: "start-machine", header: this.header, checkpoint: { bytes, slice: c.slice } },
    ];
  }

  // ---------------------------------------------------------------- checkpoints (primary)

  /** The machine took the checkpoint a joining backup wanted (its control entry is in the log). */
  checkpointTaken(nowMs: number): NodeEffect[] {
    this.nowMs = Math.max(this.nowMs, nowMs);
    const core = this.primary;
    if (!core || this.role !== "primary" || !core.checkpointWanted) return [];
    // the checkpoint fixes the console offset the backup starts at: only what left may be before it
    // (the joining backup asks again after a while)
    if (!this.holding()) {
      this.checkpointAfterHold = true;
      return [{ type: "log", level: "warn", msg: "checkpoint not sent: the hold on the epoch at the arbiter has run out (another is taken once it is renewed)" }];
    }
    const first = core.logLength;
    core.checkpointTaken(first);
    // joining: output leaves at once, so the whole stream is released here and the offset is final
    const effects = this.release();
    effects.push({ type: "send-checkpoint", first, console: this.stream.end, inputs: [...this.stream.appliedInput.entries()], consoleTail: this.stream.releasedTail(consoleTailBytesMax) });
    return effects;
  }

  checkpointSent(): NodeEffect[] {
    return this.primary && this.role === "primary" ? this.core(this.primary.checkpointSent()) : [];
  }

  checkpointFailed(): NodeEffect[] {
    return this.primary && this.role === "primary" ? this.core(this.primary.checkpointFailed()) : [];
  }

  // ---------------------------------------------------------------- time, arbiter, takeover

  tick(nowMs: number, machineSlice: number): NodeEffect[] {
    // this node's own longest stall while in a pair (time between ticks: its event loop blocked or not scheduled)
    const paired = this.primary?.state === "protected" || this.backup?.state === "following";
    if (this.lastTickMs !== undefined && paired) this.longestTickGapMs = Math.max(this.longestTickGapMs, nowMs - this.lastTickMs);
    this.lastTickMs = nowMs;
    this.nowMs = Math.max(this.nowMs, nowMs);
    this.machineSlice = Math.max(this.machineSlice, machineSlice);
    if (this.primary && this.role === "primary") {
      const effects = [...this.core(this.primary.tick(nowMs)), ...this.release(nowMs), ...this.gateEffects()];
      if (this.config.arbiterHold && this.holdLapsed !== !this.holding()) {
        this.holdLapsed = !this.holdLapsed;
        if (this.holdLapsed) effects.push({ type: "log", level: "warn", msg: "the hold on the epoch at the arbiter ran out: output, disk writes and the guest wait until it is renewed", fields: { epoch: this.epoch } });
      }
      if (this.primary.state !== "joining") this.joinStart = undefined; // that join ended without protection
      return effects;
    }
    if (this.backup && this.role === "backup") {
      this.backup.setExecuted(this.machineSlice);
      return [...this.core(this.backup.tick(nowMs)), ...this.askCheckpointAgain(nowMs)];
    }
    return [];
  }

  /**
   * Joining: no part of a checkpoint came for a while (parts were lost, or the primary never sent
   * one): say hello again, which asks the primary for a new checkpoint. Until the backup has one the
   * log is of no use to it, and a primary whose joining backup never reports progress pauses its
   * guest (lag control), so nothing else would end the wait.
   */
  private askCheckpointAgain(nowMs: number): NodeEffect[] {
    const b = this.backup!;
    if (!b.join || b.checkpointed || this.machineStarting || this.machineReady || b.state !== "following") return [];
    this.checkpointWaitSinceMs ??= nowMs;
    if (nowMs - this.checkpointWaitSinceMs <= checkpointRetryMs(this.config.failureTimeoutMs)) return [];
    this.checkpointWaitSinceMs = nowMs;
    this.incoming = undefined;
    return [{ type: "log", level: "warn", msg: "no checkpoint arrived: asking the primary for one again" }, ...this.core(b.askAgain())];
  }

  /**
   * The arbiter confirmed this primary's hold on its epoch until `untilMs` (arbiterHold): output and
   * the guest, held while it had run out, go on.
   */
  arbiterHeld(untilMs: number, nowMs: number, epoch: number): NodeEffect[] {
    this.nowMs = Math.max(this.nowMs, nowMs);
    if (this.role !== "primary" || epoch !== this.epoch) return []; // asked for another epoch
    this.holdUntilMs = Math.max(this.holdUntilMs, untilMs);
    const effects = [...this.release(nowMs), ...this.gateEffects()];
    if (this.checkpointAfterHold && this.holding()) {
      this.checkpointAfterHold = false;
      if (this.primary?.checkpointWanted) effects.push({ type: "machine-checkpoint" });
    }
    if (this.holdLapsed && this.holding()) {
      this.holdLapsed = false;
      effects.unshift({ type: "log", level: "info", msg: "the hold on the epoch at the arbiter is renewed", fields: { epoch: this.epoch } });
    }
    return effects;
  }

  /** The arbiter holds a newer epoch than this node's: another node is (or will be) primary. */
  arbiterNewer(epoch: number): NodeEffect[] {
    if (this.role !== "primary" || epoch <= this.epoch) return [];
    return this.halt(`epoch ${epoch} exists at the arbiter (this primary had ${this.epoch}): another node is primary`);
  }

  /** With a leased arbiter: whether this primary holds its epoch now (null: not a primary, or no lease to hold). */
  get holdsEpoch(): boolean | null {
    return this.config.arbiterHold && this.role === "primary" ? this.holding() : null;
  }

  /** Whether this primary may act now (always, on an arbiter without leases). */
  private holding(): boolean {
    return !this.config.arbiterHold || this.nowMs < this.holdUntilMs;
  }

  arbiterAnswer(epoch: number, won: boolean | undefined): NodeEffect[] {
    if (this.primary && this.role === "primary") return [...this.core(this.primary.arbiterAnswer(epoch, won)), ...this.gateEffects()];
    if (this.backup && this.role === "backup") return this.core(this.backup.arbiterAnswer(epoch, won));
    return [];
  }

  /** Takeover, step 2: the node is ready (disk open); the machine replays everything and goes live. */
  readyToGoLive(): NodeEffect[] {
    if (this.role !== "backup" || this.takingOver === undefined || !this.machineReady) return [];
    return [...this.passEntries(), { type: "machine-gate", open: false, progress: false }, { type: "machine-go-live" }];
  }

  /** Takeover, step 3: the machine replayed everything received and waits at the gate. */
  machineTookOver(slice: number, pending: DiskRequest[]): NodeEffect[] {
    const b = this.backup;
    if (this.role !== "backup" || !b || this.takingOver === undefined) return [];
    const epoch = this.takingOver;
    this.takingOver = undefined;
    this.machineSlice = slice;
    this.gate = { open: false, progress: false };
    const effects = this.becomePrimary(epoch, b.log, pending);
    effects.push({ type: "log", level: "warn", msg: "took over: now the primary", fields: { epoch, slice, entries: b.have } });
    if (this.header?.machine?.nic) effects.push({ type: "net-takeover", ...(this.guestIp ? { ip: this.guestIp } : {}) });
    return effects;
  }

  halt(reason: string): NodeEffect[] {
    if (this.role === "halted") return [];
    this.role = "halted";
    this.haltReason = reason;
    const effects: NodeEffect[] = this.consoles.closeAll(this.epoch);
    effects.push({ type: "halt", reason });
    return effects;
  }

  /** Translates the role cores' effects: some are this core's to act on. */
  private core(effects: CoreEffect[] | ReturnType<BackupCore["step"]>): NodeEffect[] {
    const out: NodeEffect[] = [];
    for (const e of effects) {
      switch (e.type) {
        case "checkpoint-wanted":
          this.joinStart ??= { atMs: this.nowMs, heldMs: this.guestHeldMs() };
          out.push({ type: "log", level: "info", msg: "a backup joins from a checkpoint: taking one at the next boundary without disk I/O in flight" }, { type: "machine-checkpoint" });
          break;
        case "header":
          this.header = e.header;
          // a joining backup builds its machine from the checkpoint instead
          if (!this.backup?.join && !this.machineStarting && !this.machineReady) {
            this.machineStarting = true;
            out.push({ type: "start-machine", header: e.header });
          }
          break;
        case "join-from-checkpoint":
          if (this.machineStarting || this.machineReady) {
            out.push(...this.halt(`the primary no longer holds the log this backup needs from entry ${e.have} on, and its machine is already built: start the backup again (it then joins from a checkpoint)`));
          } else out.push({ type: "log", level: "info", msg: "the primary's log no longer starts at power-on: joining from a checkpoint", fields: { have: e.have } });
          break;
        case "go-live":
          this.takingOver = e.epoch;
          // a machine still being built is made ready first (machineStarted asks again)
          if (this.machineReady) out.push({ type: "prepare-takeover", epoch: e.epoch });
          else if (!this.machineStarting) out.push(...this.halt("won the epoch before the machine was ready"));
          break;
        case "halt":
          out.push(...this.halt(e.reason));
          break;
        default:
          out.push(e);
      }
    }
    return out;
  }

  /** Host ms a running primary's guest has been held by flow or lag control (or a failing disk), in total. */
  private guestHeldMs(): number {
    return this.heldMs + (this.heldSinceMs !== undefined ? this.nowMs - this.heldSinceMs : 0);
  }

  /** The log this node holds now: its oldest entry, entries, bytes, and whether it is still whole from power-on. */
  logHeld(): { from: number; entries: number; bytes: number; fromPowerOn: boolean } | undefined {
    const log = this.primary?.heldLog ?? this.backup?.log;
    return log && { from: log.base, entries: log.count, bytes: log.bytes, fromPowerOn: log.fromPowerOn };
  }

  status(): Record<string, unknown> {
    return {
      role: this.role,
      epoch: this.epoch,
      state: this.primary?.state ?? this.backup?.state ?? this.role,
      protected: this.primary?.state === "protected",
      backup: this.primary?.backupId ?? null,
      lagSlices: this.primary ? (this.primary.lagSlices(this.machineSlice) ?? null) : null,
      joining: this.primary?.joinProgress ?? null,
      logEntries: this.primary?.logLength ?? this.backup?.have ?? 0,
      logHeld: this.logHeld() ?? null,
      logComplete: this.backup?.complete ?? null,
      consoleClients: this.consoles.size,
      outputBytes: this.stream.end,
      releasedBytes: this.stream.released,
      haltReason: this.haltReason ?? null,
      arbiterHeld: this.holdsEpoch,
      // the logging channel: stalls past the failure timeout that heartbeat datagrams bridged, and its longest silence (ms)
      channel: {
        stallsRiddenOut: (this.primary?.stalls.ridden ?? 0) + (this.backup?.stalls.ridden ?? 0),
        longestSilenceMs: Math.round(Math.max(this.primary?.stalls.longestSilenceMs ?? 0, this.backup?.stalls.longestSilenceMs ?? 0)),
        // (a silence the peer saw may be this node's own stall)
        longestOwnStallMs: Math.round(this.longestTickGapMs),
      },
      outputDelayMs: this.outputDelay.summary(),
      backupLagMs: this.backupLag.summary(),
      guestHeldMs: Math.round(this.guestHeldMs()),
      lastJoinProtectedMs: this.lastJoin?.ms ?? null,
      lastJoinGuestHeldMs: this.lastJoin?.guestHeldMs ?? null,
      net: this.header?.machine?.nic ? { ...this.net, held: this.netPending.reduce((n, p) => n + p.frames.length, 0), guestIp: this.guestIp ? this.guestIp.join(".") : null } : null,
    };
  }
}

