/**
 * SimCluster: a whole primary/backup pair, its arbiter, the network between them and a console
 * client, in one process, driven tick by tick from a seed (TigerBeetle's VOPR in miniature). Each
 * node is the production NodeCore — the same code LockstepNode runs — with a ScriptedMachineThread
 * for its machine thread, talking over the real wire codec. Faults come from the seed: message drop,
 * delay (and so reorder), duplication, partitions, node kills and restarts (some restarts join from
 * a checkpoint), node pauses (a stalled process: it hears and does nothing, the peer goes on), an
 * unreachable arbiter. Invariants are checked after every tick; the first violation throws with the
 * seed and tick. (Over 400 lines: the simulated world — network, arbiter, console client — and its
 * invariants are one seeded state machine, read top to bottom.)
 */
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { MachineBatch } from "../../hypervisor/machine-thread/machine-protocol.js";
import { NodeCore, type NodeEffect } from "../core/node-core.js";
import { decodeConsoleServerMessage, encodeConsoleMessage } from "../wire/console-messages.js";
import { decodePeerMessage, encodePeerMessage } from "../wire/peer-messages.js";
import { ScriptedMachine } from "./scripted-machine.js";
import { ScriptedMachineThread, type ScriptedEvents } from "./scripted-machine-thread.js";
import { SeededRandom } from "./seeded-random.js";

export interface SimOptions {
  seed: number;
  ticks: number;
  dropRate: number;
  duplicateRate: number;
  delayMaxTicks: number;
  /** Chance per tick that a node is killed (then restarted as a fresh backup later). */
  killRate: number;
  /** Chance per tick that a node pauses (for up to 400 ticks). */
  pauseRate: number;
  /** Chance that a restarted node joins from a checkpoint rather than from power-on. */
  joinRate: number;
  /** Chance per tick that a partition starts (lasting up to partitionMaxTicks). */
  partitionRate: number;
  partitionMaxTicks: number;
  /** Chance per tick that the arbiter becomes unreachable (for up to 300 ticks). */
  arbiterOutageRate: number;
}

export function simOptionsFromSeed(seed: number, ticks = 3000): SimOptions {
  const r = new SeededRandom(seed ^ 0x5eed);
  return {
    seed,
    ticks,
    dropRate: r.chance(0.5) ? r.next() * 0.05 : 0,
    duplicateRate: r.chance(0.3) ? r.next() * 0.05 : 0,
    delayMaxTicks: r.int(1, 20),
    killRate: r.chance(0.7) ? r.next() * 0.002 : 0,
    pauseRate: r.chance(0.4) ? r.next() * 0.001 : 0,
    joinRate: r.chance(0.5) ? 0.6 : 0,
    partitionRate: r.chance(0.4) ? r.next() * 0.002 : 0,
    partitionMaxTicks: r.int(50, 1500),
    arbiterOutageRate: r.chance(0.3) ? r.next() * 0.001 : 0,
  };
}

const heartbeatIntervalMs = 20;
const failureTimeoutMs = 150;
/** Checkpoints travel in parts this small here, so that reassembly is exercised. */
const simCheckpointPartBytes = 64;

const header: LogHeader = {
  format: 2,
  v86: "sim",
  lockstep: "sim",
  machine: { name: "scripted", description: "", kind: "multiboot", memoryMiB: 1, files: {} },
  disk: null,
  clock: { epochMs: 0, msPerInstruction: 1e-5, seed: 0 },
  initialState: { kind: "power-on" },
  digestEverySlices: 0,
  recordedAt: "sim",
};

class SimNode {
  alive = true;
  pausedUntil = -1;
  machine: ScriptedMachineThread | undefined;
  /** The digest after each slice this node ran as primary. */
  digests = new Map<number, string>();
  /** The slice through which output had left when this primary became protected. */
  releasedAtProtection = 0;
  wasProtected = false;
  /** The highest slice whose output this node released. */
  releasedMax = -1;
  /** The checkpoint the machine took last, until the core says where it goes. */
  checkpoint: Uint8Array | undefined;
  /** Inputs of this node's machine already checked for a second application. */
  appliedSeen = 0;
  readonly core: NodeCore;
  constructor(
    readonly name: string,
    readonly nodeId: string,
    join: boolean,
  ) {
    this.core = new NodeCore({
      nodeId,
      heartbeatIntervalMs,
      failureTimeoutMs,
      ...(join ? { join: true } : {}),
      primary: { unackedEntriesMax: 400, lagSlicesMax: 50, logEntriesMax: 1_000_000 },
      consoleRetainBytes: 1 << 30,
    });
  }
}

interface InFlight {
  at: number;
  to: string;
  bytes: Uint8Array;
}

export class SimCluster {
  readonly r: SeededRandom;
  tick = 0;
  private nodes: SimNode[] = [];
  private network: InFlight[] = [];
  private partitionUntil = -1;
  private arbiterDownUntil = -1;
  private arbiterEpoch = 0;
  private claims: Array<{ at: number; node: SimNode; epoch: number }> = [];
  private restarts: Array<{ at: number; name: string }> = [];
  private incarnation = 0;
  /** The console client: one session on whichever node is live. */
  private client = { node: undefined as SimNode | undefined, session: 0, offset: 0, received: [] as number[], seq: 0, unacked: [] as Array<{ seq: number; data: Uint8Array }>, acked: 0 };
  readonly stats = { failovers: 0, kills: 0, pauses: 0, joins: 0, checkpointsRestored: 0, partitions: 0, halts: 0, messages: 0, dropped: 0, lost: 0 };
  /** The VM is gone: its only live copy died while no backup could take over (unprotected). */
  lost = false;

  constructor(readonly options: SimOptions) {
    this.r = new SeededRandom(options.seed);
    const a = new SimNode("A", "A#0", false);
    this.arbiterEpoch = 1;
    this.nodes = [a];
    a.machine = new ScriptedMachineThread(new ScriptedMachine(), "primary", this.events(a));
    this.apply(a, a.core.startPrimary(1, header, 0));
    this.nodes.push(this.freshBackup("B", false));
  }

  private freshBackup(name: string, join: boolean): SimNode {
    const n = new SimNode(name, `${name}#${++this.incarnation}`, join);
    if (join) this.stats.joins++;
    this.apply(n, n.core.startBackup());
    return n;
  }

  /** What a node's machine reports goes to its core (a machine restored from a checkpoint too). */
  private events(n: SimNode): ScriptedEvents {
    return {
      batch: (b: MachineBatch) => this.apply(n, n.core.machineBatch(b, this.tick)),
      executed: (slice) => this.apply(n, n.core.machineExecuted(slice)),
      checkpoint: (bytes) => {
        n.checkpoint = bytes;
        this.apply(n, n.core.checkpointTaken());
        n.checkpoint = undefined;
      },
      tookOver: (slice) => {
        this.stats.failovers++;
        n.digests = new Map();
        this.apply(n, n.core.machineTookOver(slice, []));
      },
      failed: (reason) => this.fail(`machine of ${n.nodeId} failed: ${reason}`),
      afterSlice: (slice, digest) => {
        if (n.core.role === "primary") n.digests.set(slice, digest);
        else this.checkBackupDigest(n, slice, digest);
      },
    };
  }

  private fail(what: string): never {
    throw new Error(`simulation seed ${this.options.seed} tick ${this.tick}: ${what}`);
  }

  run(): void {
    for (this.tick = 0; this.tick < this.options.ticks; this.tick++) {
      this.step();
      if (this.lost) return;
    }
    // heal and let the survivors settle, then check the end state
    this.partitionUntil = -1;
    this.arbiterDownUntil = -1;
    for (const n of this.nodes) n.pausedUntil = -1;
    for (let i = 0; i < 2000; i++, this.tick++) {
      this.step(true);
      if (this.lost) return;
    }
    this.checkEnd();
  }

  private step(calm = false): void {
    if (!calm) this.injectFaults(this.options);
    for (const rs of this.restarts.filter((x) => x.at <= this.tick)) {
      const i = this.nodes.findIndex((n) => n.name === rs.name);
      this.nodes[i] = this.freshBackup(rs.name, this.r.chance(this.options.joinRate));
    }
    this.restarts = this.restarts.filter((x) => x.at > this.tick);
    this.deliver();
    this.answerClaims();
    for (const n of this.nodes) if (this.running(n)) this.tickNode(n);
    this.console(calm);
    this.checkInvariants();
    this.checkLost();
  }

  private running(n: SimNode): boolean {
    return n.alive && this.tick > n.pausedUntil;
  }

  private injectFaults(o: SimOptions): void {
    // One failure at a time (what FT promises to survive): kill or pause only while the pair is
    // protected by a backup whose log covers all output that left.
    // (A following backup alone is not protection: its primary may already be dead and undetected.)
    const protectedNow =
      this.nodes.every((n) => this.running(n)) &&
      this.nodes.some((n) => n.core.primary?.state === "protected") &&
      this.nodes.some((n) => n.core.backup?.state === "following" && n.core.backup.complete >= n.core.backup.eligibleAt && n.machine !== undefined);
    if (protectedNow && this.restarts.length === 0 && this.r.chance(o.killRate)) {
      const victim = this.nodes[this.r.int(0, 1)]!;
      victim.alive = false;
      this.stats.kills++;
      this.restarts.push({ at: this.tick + this.r.int(100, 600), name: victim.name });
    } else if (protectedNow && this.r.chance(o.pauseRate)) {
      const victim = this.nodes[this.r.int(0, 1)]!;
      victim.pausedUntil = this.tick + this.r.int(20, 400);
      this.stats.pauses++;
    }
    if (this.tick > this.partitionUntil && this.r.chance(o.partitionRate)) {
      this.partitionUntil = this.tick + this.r.int(10, o.partitionMaxTicks);
      this.stats.partitions++;
    }
    if (this.tick > this.arbiterDownUntil && this.r.chance(o.arbiterOutageRate)) this.arbiterDownUntil = this.tick + this.r.int(10, 300);
  }

  private send(from: SimNode, bytes: Uint8Array): void {
    const to = this.nodes.find((n) => n !== from)!;
    this.stats.messages++;
    if (this.tick <= this.partitionUntil || this.r.chance(this.options.dropRate)) {
      this.stats.dropped++;
      return;
    }
    const copies = this.r.chance(this.options.duplicateRate) ? 2 : 1;
    for (let i = 0; i < copies; i++) this.network.push({ at: this.tick + this.r.int(1, this.options.delayMaxTicks), to: to.name, bytes });
  }

  private deliver(): void {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const m of this.network) {
      const to = this.nodes.find((n) => n.name === m.to);
      // a paused node reads nothing: its messages wait in its socket buffer
      if (m.at <= this.tick && !(to && to.alive && this.tick <= to.pausedUntil)) due.push(m);
      else later.push(m);
    }
    this.network = later;
    for (const m of due) {
      const to = this.nodes.find((n) => n.name === m.to);
      if (!to || !to.alive || this.tick <= this.partitionUntil) continue;
      const msg = decodePeerMessage(m.bytes); // through the real codec
      // a hello to a primary comes on a new connection: the core accepts or refuses it
      this.apply(to, to.core.peerMessage(msg, this.tick, to.core.role === "primary" && msg.type === "hello"));
    }
  }

  private answerClaims(): void {
    const due = this.claims.filter((c) => c.at <= this.tick);
    this.claims = this.claims.filter((c) => c.at > this.tick);
    for (const c of due) {
      if (!c.node.alive) continue;
      let won: boolean | undefined;
      if (this.tick <= this.arbiterDownUntil) won = undefined;
      else if (c.epoch === this.arbiterEpoch + 1) {
        this.arbiterEpoch = c.epoch;
        won = true;
      } else won = false;
      this.apply(c.node, c.node.core.arbiterAnswer(c.epoch, won));
    }
  }

  /** Carries out a node's effects, the way LockstepNode does with real I/O. */
  private apply(n: SimNode, effects: NodeEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case "send":
          this.send(n, encodePeerMessage(e.message));
          break;
        case "claim-epoch":
          this.claims.push({ at: this.tick + this.r.int(1, 10), node: n, epoch: e.epoch });
          break;
        case "halt":
          this.stats.halts++;
          n.alive = false;
          if (!this.restarts.some((x) => x.name === n.name)) this.restarts.push({ at: this.tick + this.r.int(50, 300), name: n.name });
          break;
        case "start-machine":
          n.machine = e.checkpoint ? ScriptedMachineThread.fromCheckpoint(e.checkpoint.bytes, this.events(n)) : new ScriptedMachineThread(new ScriptedMachine(), "backup", this.events(n));
          if (e.checkpoint) this.stats.checkpointsRestored++;
          this.apply(n, n.core.machineStarted(n.machine.slice));
          break;
        case "machine-input":
          n.machine?.input(e.data, e.source);
          break;
        case "machine-entries":
          n.machine?.entries(e.entries);
          break;
        case "machine-checkpoint":
          n.machine?.requestCheckpoint();
          break;
        case "machine-gate":
          if (n.machine) {
            n.machine.gate = e.open;
            n.machine.progress = e.progress;
          }
          break;
        case "prepare-takeover":
          this.apply(n, n.core.readyToGoLive());
          break;
        case "machine-go-live":
          n.machine?.requestGoLive();
          break;
        case "send-checkpoint": {
          const bytes = n.checkpoint!;
          const parts = Math.max(1, Math.ceil(bytes.length / simCheckpointPartBytes));
          for (let part = 0; part < parts; part++) {
            const data = bytes.subarray(part * simCheckpointPartBytes, (part + 1) * simCheckpointPartBytes);
            this.send(n, encodePeerMessage({ type: "checkpoint", epoch: n.core.epoch, first: e.first, slice: n.machine!.slice, part, parts, data, console: e.console, inputs: e.inputs }));
          }
          this.apply(n, n.core.checkpointSent());
          break;
        }
        case "disk-release":
          this.checkRelease(n, e.slice);
          break;
        case "console-send":
          if (this.client.node === n && this.client.session === e.session) this.onConsoleMessage(encodeConsoleMessage(e.message));
          break;
        case "console-close":
          if (this.client.node === n && this.client.session === e.session) this.client.node = undefined;
          break;
        case "became-primary":
        case "disk-submit":
        case "peer-accept":
        case "peer-refuse":
        case "log":
          break;
      }
    }
  }

  private tickNode(n: SimNode): void {
    const m = n.machine;
    if (n.core.backup?.state === "waiting" && this.tick % 50 === 0) this.apply(n, n.core.peerConnected(this.tick));
    this.apply(n, n.core.tick(this.tick, m?.slice ?? 0));
    if (!m || !n.alive || n.core.role === "halted") return;
    m.step(this.tick, m.role === "primary" ? 1 : 5);
    this.checkAppliedOnce(n);
  }

  /** The backup's state after every slice its log covers equals the primary's after that slice. */
  private checkBackupDigest(n: SimNode, slice: number, digest: string): void {
    const b = n.core.backup;
    if (!b) return;
    const primary = this.nodes.find((x) => x.core.primary && x.core.epoch === b.epoch && x.nodeId !== n.nodeId);
    const theirs = primary?.digests.get(slice);
    if (theirs !== undefined && slice <= b.complete && theirs !== digest) {
      this.fail(`backup ${n.nodeId} digest ${digest} differs from primary ${primary!.nodeId}'s ${theirs} at acknowledged slice ${slice}`);
    }
  }

  /** Exactly once: no console input reaches a machine twice (checked as it happens, losses or not). */
  private checkAppliedOnce(n: SimNode): void {
    const applied = n.machine!.machine.appliedInputs;
    for (; n.appliedSeen < applied.length; n.appliedSeen++) {
      const a = applied[n.appliedSeen]!;
      if (applied.findIndex((x) => x.client === a.client && x.seq === a.seq) !== n.appliedSeen) this.fail(`input ${a.seq} applied twice on ${n.nodeId}`);
    }
  }

  /**
   * The output rule, with no exemption: a protected primary releases output of a slice only when its
   * backup's log is complete through it, or when it had left before the backup was protecting.
   */
  private checkRelease(n: SimNode, slice: number): void {
    const p = n.core.primary;
    if (!p || slice <= n.releasedMax) return; // nothing new leaves
    n.releasedMax = slice;
    if (p.state === "protected" && !n.wasProtected) n.releasedAtProtection = p.protectedFrom;
    n.wasProtected = p.state === "protected" || p.state === "claiming";
    if (!n.wasProtected) return;
    const peer = this.nodes.find((x) => x.nodeId === p.peerId);
    if (!peer?.alive || !peer.core.backup) return; // a dead backup: the primary finds out and claims
    const bound = Math.max(peer.core.backup.complete, n.releasedAtProtection);
    if (slice > bound) this.fail(`primary ${n.nodeId} released slice ${slice} but backup ${peer.nodeId} is complete through ${peer.core.backup.complete} (released ${n.releasedAtProtection} before protection)`);
  }

  private onConsoleMessage(bytes: Uint8Array): void {
    const m = decodeConsoleServerMessage(bytes); // through the real codec
    const c = this.client;
    if (m.type === "output") {
      if (m.offset !== c.offset) this.fail(`console output at offset ${m.offset}, the client expected ${c.offset}`);
      for (const b of m.data) c.received.push(b);
      c.offset += m.data.length;
    } else if (m.type === "inack") {
      c.acked = Math.max(c.acked, m.seq);
      c.unacked = c.unacked.filter((u) => u.seq > m.seq);
    }
  }

  /** The console client: follows a live primary, reads released output, types and resends input. */
  private console(calm: boolean): void {
    const c = this.client;
    if (!c.node || !c.node.alive || c.node.core.role !== "primary") {
      const live = this.nodes.filter((n) => this.running(n) && n.core.role === "primary" && n.core.primary!.state !== "halted");
      c.node = live.length ? live[this.r.int(0, live.length - 1)] : undefined;
      if (!c.node) return;
      // attach: the new server must agree with what we already have
      const s = c.node.core.stream;
      const have = s.read(Math.max(s.retainedFrom, 0), Number.MAX_SAFE_INTEGER)!;
      for (let i = 0; i < have.data.length && have.offset + i < c.offset; i++) {
        if (have.data[i] !== c.received[have.offset + i]) this.fail(`console output contradicts at offset ${have.offset + i} after moving to ${c.node.nodeId}`);
      }
      const n = c.node;
      c.session = this.tick + 1;
      this.apply(n, n.core.consoleOpened(c.session));
      this.apply(n, n.core.consoleAttach(c.session, "client", c.offset));
      for (const u of c.unacked) this.apply(n, n.core.consoleInput(c.session, u.seq, u.data));
    }
    const n = c.node;
    if (!n || !this.running(n)) return;
    if (!calm && this.r.chance(0.02) && c.unacked.length < 20) {
      const u = { seq: ++c.seq, data: new TextEncoder().encode(`in${c.seq}`) };
      c.unacked.push(u);
      this.apply(n, n.core.consoleInput(c.session, u.seq, u.data));
    } else if (c.unacked.length > 0 && this.r.chance(0.01)) {
      // resend what is not acknowledged (a client does after a timeout): must not be applied twice
      for (const u of c.unacked) this.apply(n, n.core.consoleInput(c.session, u.seq, u.data));
    }
  }

  private checkInvariants(): void {
    const live = this.nodes.filter((n) => n.alive && (n.core.primary?.state === "unprotected" || n.core.primary?.state === "joining"));
    if (live.length > 1) this.fail(`two live primaries: ${live.map((n) => `${n.nodeId} epoch ${n.core.epoch}`).join(", ")}`);
    for (const n of live) if (n.core.epoch !== this.arbiterEpoch) this.fail(`live primary ${n.nodeId} has epoch ${n.core.epoch} but the arbiter is at ${this.arbiterEpoch}`);
  }

  /**
   * A VM is lost when no node can ever be primary again: no primary is alive and no backup is
   * following (or claiming) with a log that covers the output that already left. That happens only
   * when a primary dies while unprotected, which the protocol cannot prevent; it must never happen
   * while a caught-up backup exists (then it is a bug, caught as "two"/"zero" live primaries).
   */
  private checkLost(): void {
    const primaries = this.nodes.some((n) => n.alive && n.core.primary && n.core.primary.state !== "halted");
    const heirs = this.nodes.some((n) => n.alive && n.core.backup && (n.core.backup.state === "following" || n.core.backup.state === "claiming" || n.core.backup.state === "live") && n.core.backup.complete >= n.core.backup.eligibleAt);
    const pendingTakeover = this.claims.length > 0;
    if (!primaries && !heirs && !pendingTakeover) {
      this.lost = true;
      this.stats.lost++;
    }
  }

  private checkEnd(): void {
    const live = this.nodes.filter((n) => n.alive && n.core.role === "primary" && n.core.primary!.state !== "halted");
    if (live.length !== 1) this.fail(`after healing, ${live.length} live primaries`);
    const n = live[0]!;
    const all = n.core.stream.read(n.core.stream.retainedFrom, Number.MAX_SAFE_INTEGER)!;
    for (let i = Math.max(all.offset, 0); i < this.client.offset; i++) if (all.data[i - all.offset] !== this.client.received[i]) this.fail(`console byte ${i} differs from the live primary's stream`);
    const seen = new Set(n.machine!.machine.appliedInputs.map((a) => a.seq));
    for (let s = 1; s <= this.client.acked; s++) if (!seen.has(s)) this.fail(`acknowledged input ${s} was lost`);
  }
}
