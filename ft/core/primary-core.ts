/**
 * PrimaryCore: the primary's side of the logging channel, sans IO (etcd-raft style). It never reads a
 * clock or touches a socket: the runtime feeds it log entries, peer messages (`step`), arbiter
 * answers and the time (`tick`), and carries out the effects it returns.
 *
 * Rules (VMware FT §2.2–2.3):
 *   - Output rule: output produced in slice k may leave only once the backup has acknowledged the
 *     log complete through boundary k (`releasableSlice`). Unprotected, everything may leave.
 *   - Flow control: at most `unackedEntriesMax` entries, and `unackedBytesMax` bytes of them, may
 *     be unacknowledged; past that the guest pauses (`mayRun` false) and nothing more is sent until
 *     acks arrive (backpressure). Nothing is ever dropped. Log frames are batched by entries and by
 *     bytes, so no frame is ever too large for the peer (a disk-read entry carries up to 256 KiB).
 *   - Lag control: when the backup has executed more than `lagSlicesMax` slices less than the
 *     primary, or the oldest slice it has not executed ended more than `lagMsMax` ago, the guest
 *     pauses until the backup is within half of both (hysteresis). A joining backup must come
 *     within half of `lagSlicesMax` to protect: one joining from a checkpoint is held to that bound
 *     once it runs; one replaying from power-on converges instead (the guest advances at most half
 *     as many slices as it replays), so a joiner no faster than the guest still catches up.
 *   - A hello from the protecting backup's node id is a restart (the next epoch is claimed before
 *     it joins again) when it says another run, or, without a run, nothing held.
 *   - Retransmission: entries sent and not acknowledged while the backup's acks stop moving for
 *     `retransmitMs` are sent again from what it has. A frame may be lost or overtaken (a log frame
 *     that arrives before the header is dropped); when that was the last frame before flow control
 *     paused the guest, nothing else would ever make the backup ask again.
 *   - Disk lease: a protected primary's disk writes may start only while its backup cannot have
 *     gone live (`diskWritableUntilMs`). The primary's heartbeats carry its time; the backup echoes
 *     the newest it got in its heartbeats and acks. An echo of t proves the backup heard this
 *     primary at t or later, so it cannot suspect it before t + failureTimeoutMs; writes may start
 *     until a margin before that. Without it, a primary that stalled (a long pause) while its backup
 *     took over would, on waking, act on acks still in its socket and write what the backup had
 *     acknowledged — over newer writes of the new primary.
 *   - Retention: the log is held from the oldest entry the backup has not acknowledged (a
 *     retransmission starts there), so memory stays bounded however long the pair runs. Only while
 *     the log is young (`LogRetention`) is it kept whole from power-on; after that a backup that
 *     attaches without a log is sent a checkpoint instead (the header tells it so).
 *   - Failure detection: no heartbeat, log or ack traffic from the backup for `failureTimeoutMs`
 *     means the backup is suspected, unless its heartbeat datagrams (`beat`, a second path beside
 *     the channel, as VMware FT's UDP heartbeats) still arrive: then the channel is only stalled (a
 *     TCP retransmission backs off 200 ms, 400 ms, ... on a lossy link) and the backup is suspected
 *     once the channel has been silent for `channelTimeoutMs`. The primary then asks the arbiter for
 *     the next epoch and only on winning continues alone (unprotected); losing means the backup went
 *     live: halt.
 *   - Every message carries the epoch; acks of another epoch are ignored.
 *
 * Over 400 lines on purpose: the output rule, flow and lag control, retransmission, the disk lease
 * and failure detection all read and move the same peer state (have, complete, executed, last
 * heard) on every ack; split apart they would pass that state back and forth.
 */
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { logBatchBytesMax, logBatchEntriesMax, type PeerMessage } from "../wire/peer-messages.js";
import { defaultLogRetention, RetainedLog, type LogRetention } from "./retained-log.js";

export interface PrimaryConfig {
  nodeId: string;
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  /**
   * While the peer's heartbeat datagrams still arrive, a silent logging channel is suspected only
   * after this long (a stalled TCP connection, not a dead peer). Longer than failureTimeoutMs.
   */
  channelTimeoutMs: number;
  /** Flow control bound: entries sent but not acknowledged. */
  unackedEntriesMax: number;
  /** Flow control bound in bytes (`entryBytes`): the guest pauses and sending stops past it. */
  unackedBytesMax: number;
  /** Lag control bound, in slices. */
  lagSlicesMax: number;
  /**
   * Lag control bound in time: the guest pauses while the oldest slice the backup has not executed
   * ended more than this many ms ago (host time), and goes on once it is within half of it. Backup
   * and primary run the same instructions at the same speed, so a backup that fell behind (a GC
   * pause, a compile, the scheduler) never catches up by itself: the primary gives it the time.
   */
  lagMsMax: number;
  /** How long the log is kept whole from power-on (see RetainedLog). */
  retention: LogRetention;
}

export const defaultPrimaryConfig: Omit<PrimaryConfig, "nodeId"> = {
  heartbeatIntervalMs: 50,
  failureTimeoutMs: 400,
  channelTimeoutMs: 5000,
  unackedEntriesMax: 20_000,
  unackedBytesMax: 32 * 2 ** 20,
  lagSlicesMax: 200,
  lagMsMax: 30,
  retention: defaultLogRetention,
};

/** Slices whose end time is kept for lag control at most (a backup that stops acking stops the guest long before). */
const unexecutedTrackedMax = 100_000;

/** A gap between ticks longer than this means this side stalled. */
export const stallMs = (failureTimeoutMs: number) => failureTimeoutMs / 4;

/**
 * A joining backup is dropped after this much silence. Longer than the failure timeout: a joining
 * backup builds its machine and replays flat out (its event loop stalls for longer than a caught-up
 * backup's), and dropping it early gains nothing — it cannot take over — while it costs a join.
 */
export const joiningTimeoutMs = (failureTimeoutMs: number) => failureTimeoutMs * 10;

/** Disk writes stop starting this long before a silent backup could suspect the primary (room for writes in flight to land). */
export const diskLeaseMarginMs = (failureTimeoutMs: number) => failureTimeoutMs / 4;

/** What a side knows of its peer's liveness: when it last heard it on the channel, and by datagram. */
export interface PeerHeard {
  /** The last message on the logging channel. */
  lastHeardMs: number;
  /** The last heartbeat datagram (never: -Infinity). */
  lastBeatMs: number;
  /** The channel has been silent past the failure timeout while datagrams went on (counted once per stall). */
  stalled?: boolean;
}

/**
 * Whether the peer counts as failed: silent on both paths for the failure timeout, or on the channel
 * for the channel timeout even though its datagrams still arrive. Counts each stall ridden out, and
 * keeps the longest silence of the channel seen.
 */
export function peerSuspected(h: PeerHeard, nowMs: number, c: { failureTimeoutMs: number; channelTimeoutMs: number }, stalls: { ridden: number; longestSilenceMs: number }): boolean {
  const channelMs = nowMs - h.lastHeardMs;
  stalls.longestSilenceMs = Math.max(stalls.longestSilenceMs, channelMs);
  if (channelMs <= c.failureTimeoutMs) {
    h.stalled = false;
    return false;
  }
  if (nowMs - h.lastBeatMs <= c.failureTimeoutMs && channelMs <= c.channelTimeoutMs) {
    if (h.stalled !== true) stalls.ridden++;
    h.stalled = true;
    return false;
  }
  return true;
}

/** Unacknowledged entries are sent again once the backup's acks stood still this long. */
export const retransmitMs = (failureTimeoutMs: number) => failureTimeoutMs / 2;

/**
 * unprotected: no backup; output leaves at once.
 * joining:     a backup is catching up on the log (from power-on); output still leaves at once and
 *              the backup is told it may not take over (it could not reproduce that output).
 * protected:   the backup is caught up and eligible; the output rule and lag control apply.
 * claiming:    the backup fell silent; waiting for the arbiter.
 */
export type PrimaryState = "unprotected" | "joining" | "protected" | "claiming" | "halted";

/** releasedThrough sent to a joining backup: it may not take over until told otherwise. */
export const notEligible = Number.MAX_SAFE_INTEGER;

export type CoreEffect =
  | { type: "send"; message: PeerMessage }
  /** A backup wants to join from a checkpoint: take one at the next boundary (see checkpointTaken). */
  | { type: "checkpoint-wanted" }
  /**
   * Ask the arbiter for `epoch`. `supersedes`: the primary a backup followed, whose hold it may
   * take over at once (that primary's disk lease and the output rule already stop it); any other
   * holder must have let its hold run out first.
   */
  | { type: "claim-epoch"; epoch: number; supersedes?: string }
  | { type: "halt"; reason: string }
  /** Send a heartbeat datagram of `epoch` to the peer `to` (outside the channel: see PeerHeard). */
  | { type: "beat"; epoch: number; to: string }
  | { type: "log"; level: "info" | "warn"; msg: string; fields?: Record<string, unknown> };

interface Peer {
  nodeId: string;
  /** Where it serves its status and console, as its hello said. */
  url?: string;
  /** Entries the backup holds (from which the log is sent to it). */
  have: number;
  /** The most entries this backup (this incarnation) acknowledged holding: it never holds fewer. */
  acked: number;
  /**
   * A checkpoint was sent and another one asked for since (a retried hello crossed it): the backup
   * may have built its machine from the earlier one, whose log starts here. Kept until its acks
   * show it is past the newest checkpoint.
   */
  floor?: number;
  /** The backup's run (process start) as its hello said. */
  run?: string;
  /** Slice the backup's log is complete through. */
  complete: number;
  /** Slices the backup has executed. */
  executed: number;
  /** Entries sent on this connection. */
  sent: number;
  /** Since when entries sent have waited with no ack progress (undefined: none waiting). */
  waitingSinceMs?: number;
  lastHeardMs: number;
  lastBeatMs: number;
  stalled?: boolean;
  /** Joining from a checkpoint: wanted (not taken yet), or being sent (no log goes out before it). */
  checkpoint?: "wanted" | "sending";
  /** It joined from a checkpoint: it starts close behind, so lag control applies while it catches up. */
  fromCheckpoint?: boolean;
  /** The slice of the checkpoint sent to it (lag control applies once it has executed that far). */
  checkpointSlice?: number;
  /**
   * Replaying from power-on (or from where its log ended): the primary's slice and what the backup
   * had executed when it said hello. Convergence is measured from here (see `mayRun`).
   */
  replayFrom?: { slice: number; executed: number };
}

export class PrimaryCore {
  state: PrimaryState = "unprotected";
  private readonly log: RetainedLog;
  private peer: Peer | undefined;
  private lastHeartbeatMs = Number.NEGATIVE_INFINITY;
  private lagPaused = false;
  private completeSlice = 0;
  private claimingEpoch = 0;
  /** The highest slice whose output this primary has allowed out (unprotected: all it ran). */
  private releasedThrough = 0;
  /** The slice through which output had left when the backup caught up (it must cover it to take over). */
  protectedFrom = 0;
  private currentSlice = 0;
  private lastTickMs: number | undefined;
  /** The latest time this core was told (ms). */
  private nowMs = Number.NEGATIVE_INFINITY;
  /** The backup heard this primary at this time or later (the newest heartbeat time it echoed). */
  private heardByBackupAtMs = Number.NEGATIVE_INFINITY;
  /** Slices the backup has not executed yet and when each ended (host ms), oldest first. */
  private unexecuted: Array<{ slice: number; atMs: number }> = [];
  /** The newest backup-lag measurement (see takeLagSample). */
  private lagSample: number | undefined;
  /** Logging-channel stalls past the failure timeout that the backup's heartbeat datagrams bridged. */
  readonly stalls = { ridden: 0, longestSilenceMs: 0 };

  constructor(
    private readonly config: PrimaryConfig,
    public epoch: number,
    private readonly header: LogHeader,
    /** The log so far (a backup that took over keeps the one it received); a new, empty one by default. */
    log?: RetainedLog,
  ) {
    this.log = log ?? new RetainedLog(0, config.retention);
  }

  get protectedBy(): string | undefined {
    return this.state === "protected" ? this.peer?.nodeId : undefined;
  }

  /** The backup this primary talks to (whatever the state), if any. */
  get peerId(): string | undefined {
    return this.peer?.nodeId;
  }

  /** Where the backup attached serves its status and console, if it said. */
  get backupUrl(): string | undefined {
    return this.backupId !== undefined ? this.peer?.url : undefined;
  }

  /** The backup attached (protecting or joining), if any. */
  get backupId(): string | undefined {
    return this.state === "protected" || this.state === "joining" ? this.peer?.nodeId : undefined;
  }

  /** Entries logged since power-on (the index of the next one). */
  get logLength(): number {
    return this.log.end;
  }

  /** The log as held now (read only: status). */
  get heldLog(): Readonly<Pick<RetainedLog, "base" | "count" | "bytes" | "fromPowerOn">> {
    return this.log;
  }

  /** Appends an entry the recorder produced (already applied on the primary). */
  append(entry: LogEntry): void {
    if (this.state === "halted") return;
    this.log.append(entry);
    if (entry.kind === "progress" && entry.slice > this.completeSlice) this.completeSlice = entry.slice;
    this.forget();
  }

  /**
   * Drops what no backup can need: entries the attached backup acknowledged (it asks again from its
   * `have`), or all of them with none attached or one waiting for a checkpoint. Kept whole while
   * the log is young (RetainedLog.fromPowerOn).
   */
  private forget(): void {
    const p = this.peer;
    const needed = p && this.state !== "unprotected" && p.checkpoint !== "wanted" ? p.have : this.log.end;
    this.log.forgetBefore(Math.min(needed, p?.floor ?? needed));
  }

  /** The runtime ran through this slice; `atMs`: when it ended (host ms), for lag in time. */
  noteSlice(slice: number, atMs?: number): void {
    this.currentSlice = Math.max(this.currentSlice, slice);
    if (atMs === undefined || !this.lagControlled()) {
      this.unexecuted = [];
      return;
    }
    const last = this.unexecuted.at(-1)?.slice ?? this.peer!.executed;
    if (slice > last && this.unexecuted.length < unexecutedTrackedMax) this.unexecuted.push({ slice, atMs });
  }

  /** Lag control applies: a backup protects, or joined from a checkpoint and catches up. */
  private lagControlled(): boolean {
    const p = this.peer;
    return p !== undefined && p.checkpoint === undefined && (this.state === "protected" || (this.state === "joining" && p.fromCheckpoint === true));
  }

  /** How long (ms) the oldest slice the backup has not executed has been waiting; 0 if none. */
  lagMs(nowMs: number): number {
    const o = this.unexecuted[0];
    return o ? Math.max(0, nowMs - o.atMs) : 0;
  }

  /**
   * Backup lag measured at the last ack that moved `executed`: how long before it the newest slice
   * it covers had ended on this side (ms). Taken once.
   */
  takeLagSample(): number | undefined {
    const s = this.lagSample;
    this.lagSample = undefined;
    return s;
  }

  /** Output of slices up to this one may be released now. */
  releasableSlice(): number {
    let r: number;
    switch (this.state) {
      case "unprotected":
      case "joining":
        r = this.currentSlice;
        break;
      case "protected":
      case "claiming":
        r = Math.max(this.releasedThrough, this.peer?.complete ?? 0);
        break;
      case "halted":
        return -1;
    }
    this.releasedThrough = Math.max(this.releasedThrough, r);
    return r;
  }

  /** Disk writes may start until this time (ms; see the disk lease above). */
  diskWritableUntilMs(): number {
    switch (this.state) {
      case "unprotected":
      case "joining":
        return Number.POSITIVE_INFINITY; // no backup that could go live
      case "protected":
      case "claiming":
        return this.heardByBackupAtMs + this.config.failureTimeoutMs - diskLeaseMarginMs(this.config.failureTimeoutMs);
      case "halted":
        return Number.NEGATIVE_INFINITY;
    }
  }

  /** Whether the guest may run another slice (flow and lag control); `nowMs`: host ms. */
  mayRun(currentSlice: number, nowMs: number): boolean {
    if (this.state === "halted") return false;
    const p = this.peer;
    if (!p || this.state === "unprotected") return true;
    if (p.checkpoint === "wanted") return true; // nothing sent yet
    // counted from the oldest entry held for it (an earlier checkpoint's, while it may run from that
    // one): memory stays bounded, at the price of holding the guest once a retried join has let that
    // much accumulate
    const from = Math.min(p.have, p.floor ?? p.have);
    if (this.log.end - from >= this.config.unackedEntriesMax || this.log.bytesBetween(from, this.log.end) >= this.config.unackedBytesMax) return false;
    // no lag control while a backup replays from power-on (it would stall the guest for the whole
    // history); one that joined from a checkpoint starts close behind and is held within bounds
    // once it has built its machine from the checkpoint (it then reports it executed through the
    // checkpoint's slice, where it reported nothing before); until then the guest goes on: a
    // checkpoint lost on the way, asked for again, must not hold it all that while
    if (this.state === "joining" && p.fromCheckpoint && (p.checkpoint !== undefined || p.executed === 0)) return true;
    const lag = currentSlice - p.executed;
    // A backup replaying from power-on is not held to a lag bound: that would stall the guest for
    // the whole history. But one no faster than the guest would never catch up either (an idle
    // guest's slices cost the replay about what they cost the primary), so the guest advances at
    // most half as many slices as the backup replays since its hello, past a head start of
    // lagSlicesMax: a joiner twice as fast as the guest never holds it, a slower one is caught up
    // after replaying at most twice the history (QEMU's auto-converge throttles a migrating guest
    // the same way). Once close, the joiner is held to like any other (below).
    // (not before it reports executing: a backup still building its machine, or one whose machine
    // never starts, must not hold the guest)
    if (this.state === "joining" && !p.fromCheckpoint && lag > this.config.lagSlicesMax / 2) {
      if (p.executed === 0) return true;
      const from = p.replayFrom ?? { slice: currentSlice, executed: p.executed };
      return currentSlice - from.slice < this.config.lagSlicesMax + (p.executed - from.executed) / 2;
    }
    // a joiner that merely keeps pace would sit for ever between the bound it must reach to protect
    // (lagSlicesMax / 2) and the one that pauses the guest (lagSlicesMax): while it joins, the guest
    // waits at the first, so the join ends as soon as the joiner replays what it was behind
    if (this.state === "joining") return lag <= this.config.lagSlicesMax / 2;
    const lagMs = this.lagMs(nowMs);
    if (this.lagPaused && lag <= this.config.lagSlicesMax / 2 && lagMs <= this.config.lagMsMax / 2) this.lagPaused = false;
    else if (!this.lagPaused && (lag > this.config.lagSlicesMax || lagMs > this.config.lagMsMax)) this.lagPaused = true;
    return !this.lagPaused;
  }

  /** A joining backup's progress (for /status): the checkpoint's slice and what it executed. */
  get joinProgress(): { checkpointSlice: number | null; executed: number; checkpoint: string | null } | null {
    const p = this.peer;
    return p && this.state === "joining" ? { checkpointSlice: p.checkpointSlice ?? null, executed: p.executed, checkpoint: p.checkpoint ?? null } : null;
  }

  /** Backup lag in slices, or undefined when unprotected. */
  lagSlices(currentSlice: number): number | undefined {
    return this.peer && this.state !== "unprotected" ? currentSlice - this.peer.executed : undefined;
  }

  /** A heartbeat datagram from `nodeId` of `epoch` (authenticated by the runtime): the backup is alive. */
  beat(nodeId: string, epoch: number, nowMs: number): void {
    if (this.peer?.nodeId === nodeId && epoch === this.epoch) this.peer.lastBeatMs = Math.max(this.peer.lastBeatMs, nowMs);
  }

  /** A peer connection was lost: forget what was sent on it (acks already received stand). */
  peerDisconnected(): void {
    if (this.peer) this.peer.sent = this.peer.have;
  }

  step(message: PeerMessage, nowMs: number): CoreEffect[] {
    if (this.state === "halted") return [];
    this.nowMs = Math.max(this.nowMs, nowMs);
    const effects: CoreEffect[] = [];
    switch (message.type) {
      case "hello": {
        if (message.epoch !== 0 && message.epoch !== this.epoch) {
          effects.push({ type: "log", level: "warn", msg: "hello of another epoch rejected", fields: { theirs: message.epoch, ours: this.epoch } });
          break;
        }
        if ((this.state === "protected" || this.state === "joining") && this.peer && this.peer.nodeId !== message.nodeId && !peerSuspected(this.peer, nowMs, this.config, this.stalls)) {
          effects.push({ type: "log", level: "warn", msg: "hello from a second backup rejected while the first is alive", fields: { current: this.peer.nodeId, other: message.nodeId } });
          break;
        }
        // the protecting backup's node id with nothing kept: it restarted (a fixed --node-id); or
        // with less than this side still holds (it must start over from a checkpoint, which cannot
        // be taken while its disk writes wait for its acknowledgement under the output rule)
        const end = this.log.end;
        const known = this.peer?.nodeId === message.nodeId ? this.peer : undefined;
        // A hello overtaken by its own later acks (or a duplicate of an older one) asks for less than
        // the backup holds (it never loses entries; a restarted one says 0): go on from what it
        // acknowledged or said it held before.
        // A hello that says its run (a process start) is the same backup when the run matches, even
        // saying 0 (one sent before anything arrived, overtaken by the acks that made it protect:
        // taking it for a restart claimed the next epoch and left the pair unprotected for good);
        // without a run, 0 means a restart.
        const sameRun = known !== undefined && (message.run !== undefined && known.run !== undefined ? message.run === known.run : message.have > 0);
        const have = message.have > end ? 0 : sameRun ? Math.max(message.have, known.acked) : message.have;
        // a join hello of the same run after its checkpoint was restored (it reported executing)
        // is an old one overtaken, not a new ask
        if (this.state === "protected" && message.join === true && sameRun && message.run !== undefined && known.fromCheckpoint && known.checkpoint === undefined && known.executed > 0) {
          known.lastHeardMs = nowMs;
          break;
        }
        const restarted = known !== undefined && (message.join === true || !sameRun || have < this.log.base);
        if (this.state === "protected" && this.peer && (this.peer.nodeId !== message.nodeId || restarted)) {
          // The protecting backup fell silent (or restarted) and a backup asks to join. The old one
          // may be alive behind a partition and about to claim the next epoch: this side must win
          // that epoch before it goes on with a new backup (VMware FT §2.3), never slide over to it.
          // (A restarted one kept protection, so output was held for a backup that could not ack.)
          this.state = "claiming";
          this.claimingEpoch = this.epoch + 1;
          const msg = restarted ? "the protecting backup restarted (or lacks log no longer held): claiming the next epoch before it joins again" : "a new backup asks to join while the protecting one is silent: claiming the next epoch first";
          effects.push({ type: "log", level: "warn", msg, fields: { silent: this.peer.nodeId, other: message.nodeId } });
          effects.push({ type: "claim-epoch", epoch: this.claimingEpoch });
          break;
        }
        if (this.state === "claiming") {
          effects.push({ type: "log", level: "warn", msg: "hello while claiming the next epoch rejected", fields: { nodeId: message.nodeId } });
          break;
        }
        if (message.join && this.state === "joining" && this.peer?.nodeId === message.nodeId && this.peer.checkpoint) {
          // it asks again while its checkpoint is being taken or sent: that one is on its way
          this.peer.lastHeardMs = nowMs;
          effects.push(this.headerMessage(true));
          break;
        }
        if (message.have > end) {
          effects.push({ type: "log", level: "warn", msg: "backup claims more log than exists; starting it over", fields: { have: message.have, log: end } });
        }
        // The entries it lacks are no longer held (the log is kept from what the backup acknowledged,
        // and whole from power-on only while young): it joins from a checkpoint instead.
        const join = message.join === true || have < this.log.base;
        if (join && !message.join) {
          effects.push({ type: "log", level: "info", msg: "the log a backup lacks is no longer held: it joins from a checkpoint", fields: { nodeId: message.nodeId, have, heldFrom: this.log.base } });
        }
        const floor = known && (known.checkpoint === undefined && known.fromCheckpoint ? Math.min(known.floor ?? known.have, known.have) : known.floor);
        this.peer = {
          nodeId: message.nodeId,
          ...(message.url !== undefined ? { url: message.url } : {}),
          ...(message.run !== undefined ? { run: message.run } : {}),
          have: join ? 0 : have,
          // what it says it holds counts as acknowledged: a stale hello later cannot ask for less
          acked: known && !join && have > 0 ? Math.max(known.acked, have) : !join ? have : 0,
          ...(floor !== undefined ? { floor } : {}),
          complete: known && !join && have > 0 ? known.complete : 0,
          executed: known && !join && have > 0 ? known.executed : 0,
          sent: join ? 0 : have,
          lastHeardMs: nowMs,
          lastBeatMs: Number.NEGATIVE_INFINITY,
          ...(join ? { checkpoint: "wanted" as const, fromCheckpoint: true } : {}),
          // the same backup saying hello again (a reconnect) after it joined from a checkpoint is
          // still one: lag control goes on holding the guest for it (it lost that, and a joiner no
          // faster than the guest never caught up)
          ...(!join && known?.fromCheckpoint && known.checkpoint === undefined && have > 0 ? { fromCheckpoint: true } : {}),
        };
        // (the same run asking again goes on from where its replay was measured: a fresh head start
        // at every reconnect or gap would let the guest outrun it for ever)
        if (!this.peer.fromCheckpoint) this.peer.replayFrom = (sameRun && !restarted && known.replayFrom) || { slice: this.currentSlice, executed: this.peer.executed };
        if (this.state === "unprotected") {
          this.state = "joining";
          effects.push({ type: "log", level: "info", msg: "backup attached: catching up", fields: { backup: message.nodeId, epoch: this.epoch, have } });
        }
        effects.push(this.headerMessage(join));
        if (join) effects.push({ type: "checkpoint-wanted" });
        else effects.push(...this.flush());
        break;
      }
      case "ack": {
        const p = this.peer;
        if (message.epoch !== this.epoch) {
          effects.push({ type: "log", level: "warn", msg: "ack of another epoch ignored", fields: { theirs: message.epoch, ours: this.epoch } });
          break;
        }
        if (!p) {
          effects.push({ type: "log", level: "warn", msg: "ack from a backup that is not attached ignored (it must say hello again)", fields: { epoch: message.epoch } });
          break;
        }
        p.lastHeardMs = nowMs;
        if (message.have > this.log.end) break; // impossible from an honest backup: ignore
        if (message.have > p.have) p.waitingSinceMs = undefined;
        p.have = Math.max(p.have, message.have);
        p.acked = Math.max(p.acked, message.have);
        if (p.floor !== undefined && p.checkpoint === undefined && message.have >= p.have) p.floor = undefined;
        this.heardByBackup(message.echo);
        p.sent = Math.max(p.sent, p.have);
        p.complete = Math.max(p.complete, Math.min(message.complete, this.completeSlice));
        p.executed = Math.max(p.executed, message.executed);
        if (p.sent < this.log.end) effects.push(...this.flush()); // backpressure let go
        this.forget();
        let newest: { atMs: number } | undefined;
        while (this.unexecuted.length > 0 && this.unexecuted[0]!.slice <= p.executed) newest = this.unexecuted.shift();
        if (newest) this.lagSample = Math.max(0, nowMs - newest.atMs);
        // (a backup still waiting for its checkpoint has no machine, whatever it says it executed)
        if (this.state === "joining" && p.checkpoint === undefined && p.executed >= this.currentSlice - this.config.lagSlicesMax / 2) {
          // caught up: from here on output waits for its ack, and the backup may take over once
          // its log covers what already left
          this.protectedFrom = this.releasableSlice();
          this.state = "protected";
          effects.push({ type: "log", level: "info", msg: "backup caught up: protected", fields: { backup: p.nodeId, epoch: this.epoch, releasedThrough: this.releasedThrough } });
          effects.push(this.headerMessage());
        }
        break;
      }
      case "heartbeat":
        if (message.epoch === this.epoch && this.peer && message.nodeId === this.peer.nodeId) {
          this.peer.lastHeardMs = nowMs;
          this.heardByBackup(message.echo);
        }
        break;
      case "header":
      case "log":
        // Another primary is talking to us: whoever has the newer epoch wins.
        if (message.epoch > this.epoch) {
          this.state = "halted";
          effects.push({ type: "halt", reason: `a primary of a newer epoch (${message.epoch}) exists` });
        }
        break;
    }
    return effects;
  }

  /** The backup echoed the time of a heartbeat of ours (never later than now: an echo cannot come from the future). */
  private heardByBackup(echo: number | undefined): void {
    if (echo !== undefined) this.heardByBackupAtMs = Math.max(this.heardByBackupAtMs, Math.min(echo, this.nowMs));
  }

  /** `checkpoint`: the backup is sent a checkpoint to build its machine from (not the log from power-on). */
  private headerMessage(checkpoint = false): CoreEffect {
    const releasedThrough = this.state === "protected" ? this.releasedThrough : notEligible;
    return { type: "send", message: { type: "header", epoch: this.epoch, nodeId: this.config.nodeId, header: this.header, releasedThrough, ...(checkpoint ? { checkpoint: true } : {}) } };
  }

  /**
   * The checkpoint a joining backup wanted was taken; the log continues with entry `first` (the one
   * after the checkpoint entry). No log goes out until `checkpointSent`.
   */
  checkpointTaken(first: number): void {
    const p = this.peer;
    if (!p || p.checkpoint !== "wanted") return;
    p.checkpoint = "sending";
    p.checkpointSlice = this.currentSlice;
    p.have = p.sent = Math.min(first, this.log.end);
  }

  /** The checkpoint could not be sent (the joiner went away, or encoding failed): take another. */
  checkpointFailed(): CoreEffect[] {
    const p = this.peer;
    if (!p || p.checkpoint !== "sending") return [];
    p.checkpoint = "wanted";
    p.have = p.sent = 0;
    return [{ type: "checkpoint-wanted" }];
  }

  /** The checkpoint went out: the log follows it. */
  checkpointSent(): CoreEffect[] {
    const p = this.peer;
    if (!p || p.checkpoint !== "sending") return [];
    p.checkpoint = undefined;
    return this.flush();
  }

  /** A backup is waiting for a checkpoint. */
  get checkpointWanted(): boolean {
    return this.peer?.checkpoint === "wanted" && this.state === "joining";
  }

  /** Sends every entry not yet sent (call at once when output is waiting: the output rule). */
  flush(): CoreEffect[] {
    const p = this.peer;
    if (!p || p.checkpoint || this.state === "halted" || this.state === "unprotected" || this.state === "claiming") return [];
    const effects: CoreEffect[] = [];
    // backpressure: what is in flight stays within the flow-control bound
    const log = this.log;
    while (p.sent < log.end && log.bytesBetween(p.have, p.sent) < this.config.unackedBytesMax) {
      const limit = Math.min(log.end, p.sent + logBatchEntriesMax);
      let end = p.sent + 1;
      while (end < limit && log.bytesBetween(p.sent, end + 1) <= logBatchBytesMax) end++;
      effects.push({ type: "send", message: { type: "log", epoch: this.epoch, first: p.sent, entries: this.log.slice(p.sent, end) } });
      p.sent = end;
    }
    return effects;
  }

  tick(nowMs: number): CoreEffect[] {
    if (this.state === "halted") return [];
    this.nowMs = Math.max(this.nowMs, nowMs);
    const effects: CoreEffect[] = [];
    const p = this.peer;
    // If this side itself stalled (a long slice, GC), the silence may be ours: messages may be
    // waiting unread. Restart the silence clock rather than accuse the peer.
    if (p && this.lastTickMs !== undefined && nowMs - this.lastTickMs > stallMs(this.config.failureTimeoutMs)) {
      p.lastHeardMs = nowMs;
      if (p.waitingSinceMs !== undefined) p.waitingSinceMs = nowMs;
    }
    this.lastTickMs = nowMs;
    if (this.state === "joining" && p && nowMs - p.lastHeardMs > joiningTimeoutMs(this.config.failureTimeoutMs)) {
      // a backup that never caught up cannot take over: no epoch to claim
      effects.push({ type: "log", level: "warn", msg: "joining backup fell silent: unprotected", fields: { backup: p.nodeId } });
      this.state = "unprotected";
      this.peer = undefined;
      return effects;
    }
    if ((this.state === "protected" || this.state === "joining") && p) {
      if (nowMs - this.lastHeartbeatMs >= this.config.heartbeatIntervalMs) {
        this.lastHeartbeatMs = nowMs;
        effects.push({ type: "send", message: { type: "heartbeat", epoch: this.epoch, nodeId: this.config.nodeId, at: Math.floor(nowMs) } });
        effects.push({ type: "beat", epoch: this.epoch, to: p.nodeId });
      }
      if (this.state === "protected" && peerSuspected(p, nowMs, this.config, this.stalls)) {
        this.state = "claiming";
        this.claimingEpoch = this.epoch + 1;
        effects.push({ type: "log", level: "warn", msg: "backup failure suspected: claiming the next epoch", fields: { backup: p.nodeId, silentMs: nowMs - p.lastHeardMs, beatSilentMs: nowMs - p.lastBeatMs } });
        effects.push({ type: "claim-epoch", epoch: this.claimingEpoch });
      } else {
        this.retransmitIfStuck(p, nowMs);
        effects.push(...this.flush());
      }
    }
    return effects;
  }

  /** Entries waited too long for an ack: the next flush sends them again from what the backup has. */
  private retransmitIfStuck(p: Peer, nowMs: number): void {
    if (p.checkpoint || p.sent <= p.have) {
      p.waitingSinceMs = undefined;
      return;
    }
    p.waitingSinceMs ??= nowMs;
    if (nowMs - p.waitingSinceMs <= retransmitMs(this.config.failureTimeoutMs)) return;
    p.sent = p.have;
    p.waitingSinceMs = nowMs;
  }

  /** The arbiter's answer to a claim-epoch effect (undefined: unreachable, ask again). */
  arbiterAnswer(epoch: number, won: boolean | undefined): CoreEffect[] {
    if (this.state !== "claiming" || epoch !== this.claimingEpoch) return [];
    if (won === undefined) return [{ type: "claim-epoch", epoch }];
    if (won) {
      this.epoch = epoch;
      this.state = "unprotected";
      this.peer = undefined;
      return [{ type: "log", level: "warn", msg: "won the epoch: continuing unprotected", fields: { epoch } }];
    }
    this.state = "halted";
    return [{ type: "halt", reason: `lost epoch ${epoch} to the backup` }];
  }
}
