/**
 * BackupCore: the backup's side of the logging channel, sans IO. It holds the log received so far
 * (contiguous, in order; duplicates and frames from the future are dropped and the gap re-requested),
 * knows through which slice the log is complete (the replayer may execute up to there and no
 * further), acknowledges, and detects the primary's failure. Entries handed to the machine are
 * forgotten (unless the log is young: RetainedLog), so what it holds stays bounded. On failure it asks the arbiter for the
 * next epoch; winning means going live after replaying everything received (VMware FT §2.3),
 * losing means halting.
 */
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { RetainedLog, type LogRetention } from "./retained-log.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { PeerMessage } from "../wire/peer-messages.js";
import { joiningTimeoutMs, notEligible, peerSuspected, stallMs, type CoreEffect, type PeerHeard } from "./primary-core.js";

export interface BackupConfig {
  nodeId: string;
  heartbeatIntervalMs: number;
  failureTimeoutMs: number;
  /** Silence of the channel tolerated while the primary's heartbeat datagrams still arrive (see PeerHeard). */
  channelTimeoutMs: number;
  /** How long the log is kept whole from power-on (so that, primary after a takeover, it can serve a backup from there). */
  retention: LogRetention;
  /** Join from a checkpoint of the running machine instead of replaying from power-on. */
  join?: boolean;
  /** The arbiter's identity, said in the hello (the primary refuses a backup of another arbiter). */
  arbiterId?: string;
  /** Where this node serves its status and console, said in the hello (the web view finds the pair's nodes). */
  url?: string;
  /** An id of this backup's run, said in the hello: the primary tells a restart from an old hello by it. */
  run?: string;
}

export type BackupState = "waiting" | "following" | "claiming" | "live" | "halted";

export type BackupEffect =
  | CoreEffect
  | { type: "header"; header: LogHeader }
  | { type: "go-live"; epoch: number }
  /** The primary no longer holds the log this backup lacks: it sends a checkpoint instead (join mode from now on). */
  | { type: "join-from-checkpoint"; have: number };

export class BackupCore {
  state: BackupState = "waiting";
  epoch = 0;
  header: LogHeader | undefined;
  /** Entries received and not yet handed to the machine (the young log: all of them), numbered as the primary's. */
  log: RetainedLog;
  /** Entries before this one went to the machine. */
  private passed = 0;
  /** Joining from a checkpoint (asked for, or the primary said so). */
  private joinMode: boolean;
  /** The checkpoint this backup started from arrived (join mode). */
  checkpointed = false;
  /** The log is complete through this slice (the last progress entry received). */
  complete = 0;
  private executed = 0;
  private lastHeardMs = 0;
  /** The primary's last heartbeat datagram, and whether the channel is stalled past the failure timeout while they arrive. */
  private lastBeatMs = Number.NEGATIVE_INFINITY;
  private stalled = false;
  /** Logging-channel stalls past the failure timeout that the primary's heartbeat datagrams bridged. */
  readonly stalls = { ridden: 0, longestSilenceMs: 0 };
  private lastHeartbeatMs = Number.NEGATIVE_INFINITY;
  private lastTickMs: number | undefined;
  private lastAck = { have: -1, complete: -1, executed: -1 };
  private claimingEpoch = 0;
  private gapAskedMs = Number.NEGATIVE_INFINITY;
  /** The newest time a heartbeat of the primary carried: echoed back (the primary's disk lease). */
  private primaryAt: number | undefined;
  /** Output through this slice already left the primary unprotected: taking over needs it. */
  eligibleAt = 0;
  /** The node id of the primary this backup follows (from its header). */
  primaryId: string | undefined;

  /** Says where this node serves its status and console, from the next hello on. */
  advertise(url: string): void {
    this.config.url = url;
  }

  constructor(private readonly config: BackupConfig) {
    this.log = new RetainedLog(0, config.retention);
    this.joinMode = config.join === true;
  }

  /** This backup builds its machine from a checkpoint (not from power-on). */
  get join(): boolean {
    return this.joinMode;
  }

  /** The connection to the primary is up: introduce ourselves. */
  connected(nowMs: number): BackupEffect[] {
    if (this.state !== "waiting" && this.state !== "following") return [];
    // a connection is not word from the primary: one that refuses every hello (another epoch won)
    // must not keep a following backup from ever suspecting it
    if (this.state === "waiting") this.lastHeardMs = nowMs;
    return [this.hello()];
  }

  /** Asks again (a joining backup whose checkpoint never came); unlike `connected`, the primary's silence goes on counting. */
  askAgain(): BackupEffect[] {
    return this.state === "following" ? [this.hello()] : [];
  }

  private hello(): BackupEffect {
    const join = this.joinMode && !this.checkpointed;
    const { arbiterId: arbiter, url, run } = this.config;
    return { type: "send", message: { type: "hello", epoch: this.epoch, nodeId: this.config.nodeId, have: this.have, ...(join ? { join: true } : {}), ...(arbiter !== undefined ? { arbiter } : {}), ...(url !== undefined ? { url } : {}), ...(run !== undefined ? { run } : {}) } };
  }

  /** Entries held, counted in the primary's log. */
  get have(): number {
    return this.log.end;
  }

  /** The checkpoint arrived: the machine starts at boundary `slice`; the log goes on at entry `first`. */
  checkpointReceived(first: number, slice: number): void {
    this.log = new RetainedLog(first, this.config.retention, false);
    this.passed = first;
    this.complete = slice;
    this.executed = slice;
    this.checkpointed = true;
  }

  /** Entries received since the last call, for the machine (each once, in order); then forgotten unless the log is young. */
  takeForMachine(): LogEntry[] {
    if (this.passed >= this.log.end) return [];
    const fresh = this.log.slice(this.passed);
    this.passed = this.log.end;
    this.log.forgetBefore(this.passed);
    return fresh;
  }

  /** The replayer executed through this slice. */
  setExecuted(slice: number): void {
    this.executed = Math.max(this.executed, slice);
  }

  /** The machine executed the log through `slice` and waits for more: tell the primary at once. */
  executedThrough(slice: number): BackupEffect[] {
    this.setExecuted(slice);
    return this.state === "following" ? this.ack(false) : [];
  }

  step(message: PeerMessage, nowMs: number): BackupEffect[] {
    if (this.state === "halted" || this.state === "live" || this.state === "claiming") {
      return message.type === "hello" || message.type === "ack" ? [] : [{ type: "log", level: "warn", msg: `${message.type} ignored in state ${this.state}`, fields: { epoch: message.epoch } }];
    }
    if (message.epoch < this.epoch) {
      return [{ type: "log", level: "warn", msg: "message of an older epoch rejected", fields: { type: message.type, theirs: message.epoch, ours: this.epoch } }];
    }
    const effects: BackupEffect[] = [];
    switch (message.type) {
      case "header":
        if (this.header && this.header.recordedAt !== message.header.recordedAt) {
          this.state = "halted";
          return [{ type: "halt", reason: "the primary's log header changed: this backup belongs to another run" }];
        }
        this.lastHeardMs = nowMs;
        {
          // "Not yet" while joining, then the slice through which output left, which only grows.
          // Within an epoch a primary never goes back to joining, so a "not yet" after a number is
          // an old message overtaken by a newer one on the network.
          const rt = message.releasedThrough;
          if (!this.header || message.epoch > this.epoch) this.eligibleAt = rt;
          else if (rt !== notEligible) this.eligibleAt = this.eligibleAt === notEligible ? rt : Math.max(this.eligibleAt, rt);
        }
        this.epoch = message.epoch;
        this.primaryId = message.nodeId;
        if (message.checkpoint && !this.joinMode && !this.checkpointed) {
          this.joinMode = true;
          effects.push({ type: "join-from-checkpoint", have: this.have });
        }
        if (!this.header) {
          this.header = message.header;
          this.state = "following";
          effects.push({ type: "header", header: message.header });
        }
        break;
      case "log": {
        if (!this.header || message.epoch !== this.epoch) break;
        this.lastHeardMs = nowMs;
        if (this.joinMode && !this.checkpointed) break; // log before our checkpoint: not ours yet
        const have = this.have;
        if (message.first > have) {
          // a gap (a frame was lost or overtaken): ask again from what we have, once per heartbeat
          // interval (every frame behind the gap would ask again, and each answer resends it all)
          if (nowMs - this.gapAskedMs >= this.config.heartbeatIntervalMs) {
            this.gapAskedMs = nowMs;
            effects.push(this.hello());
          }
          break;
        }
        for (let i = have - message.first; i < message.entries.length; i++) {
          const e = message.entries[i]!;
          this.log.append(e);
          if (e.kind === "progress" && e.slice > this.complete) this.complete = e.slice;
        }
        effects.push(...this.ack(true));
        break;
      }
      case "heartbeat":
        if (message.epoch === this.epoch) {
          this.lastHeardMs = nowMs;
          if (message.at !== undefined) this.primaryAt = Math.max(this.primaryAt ?? 0, message.at);
        }
        break;
      case "checkpoint":
        // the runtime reassembles it; here it only counts as traffic
        if (message.epoch === this.epoch) this.lastHeardMs = nowMs;
        break;
      case "hello":
      case "ack":
        break;
    }
    return effects;
  }

  private ack(force: boolean): BackupEffect[] {
    const a = { have: this.have, complete: this.complete, executed: this.executed };
    if (!force && a.have === this.lastAck.have && a.complete === this.lastAck.complete && a.executed === this.lastAck.executed) return [];
    this.lastAck = a;
    return [{ type: "send", message: { type: "ack", epoch: this.epoch, ...a, ...this.echo() } }];
  }

  private echo(): { echo: number } | Record<string, never> {
    return this.primaryAt !== undefined ? { echo: this.primaryAt } : {};
  }

  tick(nowMs: number): BackupEffect[] {
    // our own stall (e.g. building the machine) is not the primary's silence: see PrimaryCore.tick
    if (this.lastTickMs !== undefined && nowMs - this.lastTickMs > stallMs(this.config.failureTimeoutMs)) this.lastHeardMs = nowMs;
    this.lastTickMs = nowMs;
    if (this.state !== "following") return [];
    const effects: BackupEffect[] = [];
    if (nowMs - this.lastHeartbeatMs >= this.config.heartbeatIntervalMs) {
      this.lastHeartbeatMs = nowMs;
      effects.push({ type: "send", message: { type: "heartbeat", epoch: this.epoch, nodeId: this.config.nodeId, ...this.echo() } });
      if (this.primaryId !== undefined) effects.push({ type: "beat", epoch: this.epoch, to: this.primaryId });
      // an ack lost on the way is not followed by another while nothing changes: repeat it
      effects.push(...this.ack(true));
    }
    const silentMs = nowMs - this.lastHeardMs;
    const heard: PeerHeard = { lastHeardMs: this.lastHeardMs, lastBeatMs: this.lastBeatMs, stalled: this.stalled };
    const suspected = peerSuspected(heard, nowMs, this.config, this.stalls);
    this.stalled = heard.stalled === true;
    if (suspected) {
      if (this.complete < this.eligibleAt) {
        // Not eligible (still catching up or waiting for a checkpoint): we could not take over
        // anyway, so give a primary that is busy (e.g. taking our checkpoint) as long as it gives a
        // joining backup before giving up.
        if (silentMs <= joiningTimeoutMs(this.config.failureTimeoutMs)) return effects;
        // Output the primary released unprotected is beyond our log: going live would contradict it.
        this.state = "halted";
        const through = this.eligibleAt === Number.MAX_SAFE_INTEGER ? "was still catching up" : `had the log through slice ${this.complete}, output left through ${this.eligibleAt}`;
        effects.push({ type: "halt", reason: `primary silent before this backup caught up (it ${through}): cannot take over` });
        return effects;
      }
      this.state = "claiming";
      this.claimingEpoch = this.epoch + 1;
      effects.push({ type: "log", level: "warn", msg: "primary failure suspected: claiming the next epoch", fields: { silentMs, beatSilentMs: nowMs - this.lastBeatMs, epoch: this.claimingEpoch } });
      effects.push({ type: "claim-epoch", epoch: this.claimingEpoch, ...(this.primaryId !== undefined ? { supersedes: this.primaryId } : {}) });
    }
    return effects;
  }

  /** A heartbeat datagram from `nodeId` of `epoch` (authenticated by the runtime): the primary is alive. */
  beat(nodeId: string, epoch: number, nowMs: number): void {
    if (this.state === "following" && nodeId === this.primaryId && epoch === this.epoch) this.lastBeatMs = Math.max(this.lastBeatMs, nowMs);
  }

  arbiterAnswer(epoch: number, won: boolean | undefined): BackupEffect[] {
    if (this.state !== "claiming" || epoch !== this.claimingEpoch) return [];
    if (won === undefined) return [{ type: "claim-epoch", epoch, ...(this.primaryId !== undefined ? { supersedes: this.primaryId } : {}) }];
    if (won) {
      this.epoch = epoch;
      this.state = "live";
      return [{ type: "log", level: "warn", msg: "won the epoch: taking over", fields: { epoch, entries: this.have, complete: this.complete } }, { type: "go-live", epoch }];
    }
    this.state = "halted";
    return [{ type: "halt", reason: `lost epoch ${epoch}: the primary goes on` }];
  }
}
