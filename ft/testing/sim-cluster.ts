/**
 * SimCluster: a whole primary/backup pair, its arbiter, the network between them, a shared disk and
 * console clients, in one process, driven tick by tick from a seed (TigerBeetle's VOPR in
 * miniature). Each node is the production NodeCore — the same code LockstepNode runs — with a
 * ScriptedMachineThread for its machine thread, talking over the real wire codec; a live primary
 * reaches the shared disk (SimSharedDisk) through the production disk port and scheduler, and the
 * console clients (SimConsoles) behave like ConsoleClient. Faults come from the seed: message drop,
 * delay (and so reorder), duplication, partitions, node kills and restarts (some restarts join from
 * a checkpoint), node pauses (a stalled process: it hears and does nothing, the peer goes on), an
 * unreachable arbiter, disk outages on a node's path, dropped console connections, and newcomers:
 * the protecting backup falls silent but stays alive (paused, or cut off: it hears, is not heard)
 * while a third node, a fresh backup of another node id, dials the primary; it redials soon after
 * each refusal, so that its hello lands at any moment of the silence, the tick where it has just
 * passed the failure timeout and the primary has not yet acted on it too. The silent backup, when
 * it wakes, claims the next epoch (the race a primary must win before it goes on with the newcomer).
 * Channel stalls: what a node sends on the logging channel waits (as behind a TCP retransmission
 * lost again) while its heartbeat datagrams, which a partition, cut or drop loses like any message,
 * go on; a stall shorter than the channel timeout must pass without a failover.
 * Messages are addressed as on real connections (PeerLink): a backup sends to the primary it
 * dialed, a primary to the backup whose hello it adopted; a primary hears a connection it has not
 * adopted as a candidate's (a hello only). A following backup keeps its connection when the
 * primary adopts another (it does not redial: it hears nothing and suspects the primary, as behind
 * a partition). Of three nodes, the first to halt leaves for good (a newcomer no primary took
 * within 1000 ticks is stopped).
 *
 * Invariants (SimInvariants, SimConsoles) are checked as things happen and after every tick; the
 * first violation throws with the seed and tick. After the faults, a calm stretch: then one live
 * primary must be left whose guest runs again, and every console client attached to it must have
 * had all its input acknowledged — a fault that leaves the pair waiting for good is a failure too.
 * (A little over 400 lines: the simulated world — network, arbiter, faults, the effects a node
 * carries out — is one seeded state machine, read top to bottom.)
 */
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import type { MachineBatch } from "../../hypervisor/machine-thread/machine-protocol.js";
import type { NodeEffect } from "../core/node-core.js";
import { decodePeerMessage, encodePeerMessage } from "../wire/peer-messages.js";
import { simSectorBytes } from "./scripted-guest-disk.js";
import { ScriptedMachine, type ScriptedMachineOptions } from "./scripted-machine.js";
import { ScriptedMachineThread, type ScriptedEvents } from "./scripted-machine-thread.js";
import { decodePeerBeat, encodePeerBeat } from "../wire/peer-beat.js";
import { SeededRandom } from "./seeded-random.js";
import { SimConsoles } from "./sim-console.js";
import { SimSharedDisk } from "./sim-disk.js";
import { SimInvariants } from "./sim-invariants.js";
import { SimNode } from "./sim-node.js";
import type { SimOptions } from "./sim-options.js";

export { simOptionsFromSeed, type SimOptions } from "./sim-options.js";

/**
 * Checkpoints travel in parts this small here (several per checkpoint), so that reassembly is
 * exercised; a lost part costs a whole new checkpoint, so not much smaller.
 */
const simCheckpointPartBytes = 512;

/** A node holds no more log than this once it no longer keeps it whole (flow control lets 400 be unacknowledged). */
const logHeldEntriesMax = 1000;

/** Ticks without new faults at the end of a run; the pair must be working again by its last quarter. */
const calmTicks = 2000;
/** Leased arbiter: a hold lasts this long from its asking (a 200-tick lease less a tenth), renewed every 50 ticks. */
const holdTicks = 180;
const holdRenewTicks = 50;

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

interface InFlight {
  at: number;
  from: SimNode;
  /** The node at the other end of the connection it was sent on (none: it is lost). */
  to: SimNode | undefined;
  bytes: Uint8Array;
  /** A heartbeat datagram (to the node of `to`'s id), not a channel message. */
  beat?: true;
}

/** The peer token of the simulated pair (heartbeat datagrams are authenticated with it). */
const simPeerToken = "sim-peer-token";

export class SimCluster {
  readonly r: SeededRandom;
  tick = 0;
  private nodes: SimNode[] = [];
  private network: InFlight[] = [];
  private partitionUntil = -1;
  private arbiterDownUntil = -1;
  private arbiterEpoch = 0;
  /** Who won each epoch at the arbiter (node id). */
  private epochWinners = new Map<number, string>();
  private claims: Array<{ at: number; node: SimNode; epoch: number }> = [];
  /** Leased arbiter: renewals of a primary's hold in flight. */
  private holds: Array<{ at: number; askedAt: number; node: SimNode; epoch: number }> = [];
  private restarts: Array<{ at: number; name: string }> = [];
  private incarnation = 0;
  /** Every node that ever ran, by node id (a dead backup's log still bounds what its primary released). */
  private everyNode = new Map<string, SimNode>();
  private readonly machineOptions: ScriptedMachineOptions;
  private readonly disk: SimSharedDisk;
  private readonly consoles: SimConsoles;
  private readonly check: SimInvariants;
  private readonly ownStats = { failovers: 0, kills: 0, pauses: 0, joins: 0, checkpointsRestored: 0, toldToJoin: 0, logHeldMax: 0, partitions: 0, halts: 0, messages: 0, dropped: 0, lost: 0, reissued: 0, diskOutages: 0, diskStalls: 0, newcomers: 0, newcomersAtSilence: 0, newcomersGaveUp: 0, silencedClaims: 0, leasedSeeds: 0, holdsRenewed: 0, holdLapses: 0, newerEpochHalts: 0, stalls: 0, beatsSent: 0, protections: 0, joinTicksMax: 0 };
  /** The live primary's state at the last tick, and since when it has been joining a backup. */
  private joining: { node: SimNode; since: number } | undefined;
  /** The VM is gone: its only live copy died while no backup could take over (unprotected). */
  lost = false;

  constructor(readonly options: SimOptions) {
    this.r = new SeededRandom(options.seed);
    if (options.leasedArbiter) this.ownStats.leasedSeeds = 1;
    this.machineOptions = { diskEvery: options.diskEvery, diskSectors: 8, diskInFlightMax: 4 };
    this.check = new SimInvariants(
      { nodes: () => this.nodes, everyNode: (id) => this.everyNode.get(id), arbiterEpoch: () => this.arbiterEpoch, epochWinner: (epoch) => this.epochWinners.get(epoch), fail: (what) => this.fail(what) },
      this.machineOptions.diskSectors,
    );
    this.disk = new SimSharedDisk(this.machineOptions.diskSectors * simSectorBytes, this.r, () => this.tick, { latencyMaxTicks: options.diskLatencyMaxTicks, retryTicks: 20 }, {
      writeIssued: (path, offset, data) => {
        const n = this.everyNode.get(path.name)!;
        if (this.options.leasedArbiter && this.tick >= n.heldUntil) this.fail(`${n.nodeId} wrote the disk without a hold on epoch ${n.core.epoch} (it lasted until tick ${n.heldUntil})`);
        this.check.writeIssued(n, offset, data);
      },
      writeLanded: (_path, offset, data) => this.check.writeLanded(offset, data),
    });
    this.consoles = new SimConsoles(
      {
        r: this.r,
        liveNodes: () => this.nodes.filter((n) => this.running(n) && n.core.role === "primary" && n.core.primary!.state !== "halted"),
        running: (n) => this.running(n),
        apply: (n, effects) => this.apply(n, effects),
        fail: (what) => this.fail(what),
      },
      options.consoleDropRate,
    );
    const a = this.node("A", "A#0", false);
    this.arbiterEpoch = 1;
    this.epochWinners.set(1, a.nodeId);
    this.nodes = [a];
    a.machine = new ScriptedMachineThread(new ScriptedMachine(this.machineOptions), "primary", this.events(a));
    this.apply(a, a.core.startPrimary(1, header, 0));
    this.nodes.push(this.freshBackup("B", false));
  }

  /** What happened, for the test to see that the faults and the paths it means to cover did happen. */
  get stats() {
    const stallsRiddenOut = [...this.everyNode.values()].reduce((n, x) => n + (x.core.primary?.stalls.ridden ?? 0) + (x.core.backup?.stalls.ridden ?? 0), 0);
    return { ...this.ownStats, stallsRiddenOut, ...this.consoles.stats, diskWrites: this.disk.stats.writes, diskReads: this.disk.stats.reads, diskFailed: this.disk.stats.failed };
  }

  private node(name: string, nodeId: string, join: boolean): SimNode {
    const n = new SimNode(name, nodeId, join, this.options.powerOnLogEntriesMax, this.options.leasedArbiter);
    this.everyNode.set(nodeId, n);
    return n;
  }

  private freshBackup(name: string, join: boolean): SimNode {
    const n = this.node(name, `${name}#${++this.incarnation}`, join);
    if (join) this.ownStats.joins++;
    this.apply(n, n.core.startBackup());
    return n;
  }

  /** What a node's machine reports goes to its core (a machine restored from a checkpoint too). */
  private events(n: SimNode): ScriptedEvents {
    return {
      batch: (b: MachineBatch) => {
        // the slice each write was issued in, as the machine says (not as the core passes it on)
        for (const d of b.disk) for (const r of d.requests) if (r.op === "write") n.writeTags.set(r.id, d.slice);
        this.apply(n, n.core.machineBatch(b, this.tick));
      },
      executed: (slice) => this.apply(n, n.core.machineExecuted(slice)),
      checkpoint: (bytes) => {
        n.checkpoint = bytes;
        this.apply(n, n.core.checkpointTaken(this.tick));
        n.checkpoint = undefined;
      },
      tookOver: (slice, pending) => {
        this.ownStats.failovers++;
        this.ownStats.reissued += pending.length;
        n.digests = new Map();
        n.completeAsBackup = n.core.backup?.complete ?? 0;
        n.appliedAtTakeover = n.machine!.machine.appliedInputs.length;
        this.apply(n, n.core.machineTookOver(slice, pending));
        this.consoles.checkTakeover(n);
      },
      failed: (reason) => this.fail(`machine of ${n.nodeId} failed: ${reason}`),
      afterSlice: (slice, digest) => {
        if (n.core.role === "primary") n.digests.set(slice, digest);
        else this.check.backupDigest(n, slice, digest);
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
    for (const n of this.nodes) {
      n.pausedUntil = -1;
      n.cutUntil = -1;
      n.stallUntil = -1;
      n.diskPath.downUntil = -1;
    }
    for (let i = 0; i < calmTicks; i++, this.tick++) {
      this.step(true);
      if (this.lost) return;
    }
    this.checkEnd();
  }

  private step(calm = false): void {
    if (!calm) this.injectFaults(this.options);
    for (const rs of this.restarts.filter((x) => x.at <= this.tick)) {
      const i = this.nodes.findIndex((n) => n.name === rs.name);
      if (i >= 0) this.nodes[i] = this.freshBackup(rs.name, this.r.chance(this.options.joinRate));
    }
    this.restarts = this.restarts.filter((x) => x.at > this.tick);
    // a newcomer no primary took (its backup came back in time) is stopped: the pair goes on
    const gaveUp = this.nodes.length > 2 ? this.nodes.find((n) => n.giveUpAt !== undefined && this.tick >= n.giveUpAt && n.core.backup?.state === "waiting") : undefined;
    if (gaveUp) {
      gaveUp.alive = false;
      this.nodes = this.nodes.filter((x) => x !== gaveUp);
      this.ownStats.newcomersGaveUp++;
    }
    this.deliver();
    this.answerClaims();
    this.answerHolds();
    this.disk.tick();
    for (const n of this.nodes) {
      if (!this.running(n)) continue;
      n.diskPath.run(this.tick);
      if (this.running(n)) this.tickNode(n);
      this.checkLogHeld(n);
    }
    this.noteJoins();
    this.consoles.step(calm);
    this.check.tick();
    this.checkLost();
  }

  /** How long primaries take to protect a joining backup (a join that never ends is a livelock). */
  private noteJoins(): void {
    const p = this.nodes.find((n) => n.alive && n.core.primary && n.core.primary.state !== "halted");
    const state = p?.core.primary!.state;
    if (p && state === "joining" && this.joining?.node !== p) this.joining = { node: p, since: this.tick };
    if (this.joining && (this.joining.node !== p || state !== "joining")) {
      if (this.joining.node === p && state === "protected") this.ownStats.protections++;
      this.joining = undefined;
    }
    if (this.joining) this.ownStats.joinTicksMax = Math.max(this.ownStats.joinTicksMax, this.tick - this.joining.since);
  }

  private running(n: SimNode): boolean {
    return n.alive && this.tick > n.pausedUntil;
  }

  private injectFaults(o: SimOptions): void {
    // One failure at a time (what FT promises to survive): kill or pause only while the pair is
    // protected by a backup whose log covers all output that left (and no newcomer is about).
    // (A following backup alone is not protection: its primary may already be dead and undetected.)
    const protectedNow =
      this.nodes.length === 2 &&
      this.nodes.every((n) => this.running(n)) &&
      this.nodes.some((n) => n.core.primary?.state === "protected") &&
      this.nodes.some((n) => n.core.backup?.state === "following" && n.core.backup.complete >= n.core.backup.eligibleAt && n.machine !== undefined);
    if (protectedNow && this.restarts.length === 0 && this.r.chance(o.killRate)) {
      const victim = this.nodes[this.r.int(0, 1)]!;
      victim.alive = false;
      this.disk.abandon(victim.diskPath);
      this.ownStats.kills++;
      this.restarts.push({ at: this.tick + this.r.int(100, 600), name: victim.name });
    } else if (protectedNow && this.r.chance(o.pauseRate)) {
      const victim = this.nodes[this.r.int(0, 1)]!;
      victim.pausedUntil = this.tick + this.r.int(20, 400);
      this.ownStats.pauses++;
    } else if (o.newcomerRate > 0 && protectedNow && this.restarts.length === 0 && this.r.chance(o.newcomerRate)) {
      this.newcomer();
    }
    if (this.tick > this.partitionUntil && this.r.chance(o.partitionRate)) {
      this.partitionUntil = this.tick + this.r.int(10, o.partitionMaxTicks);
      this.ownStats.partitions++;
    }
    if (o.stallRate > 0 && this.r.chance(o.stallRate)) {
      const victim = this.nodes[this.r.int(0, this.nodes.length - 1)]!;
      if (this.tick > victim.stallUntil) {
        victim.stallUntil = this.tick + this.r.int(10, o.stallMaxTicks);
        this.ownStats.stalls++;
      }
    }
    if (this.tick > this.arbiterDownUntil && this.r.chance(o.arbiterOutageRate)) this.arbiterDownUntil = this.tick + this.r.int(10, 300);
    if (this.r.chance(o.diskOutageRate)) {
      const victim = this.nodes[this.r.int(0, this.nodes.length - 1)]!;
      if (this.tick > victim.diskPath.downUntil) {
        victim.diskPath.downUntil = this.tick + this.r.int(10, 200);
        this.ownStats.diskOutages++;
      }
    }
  }

  /**
   * A fresh backup, the third node for a while: the protecting backup falls silent (paused or cut
   * off) and stays alive; the newcomer dials the primary a little later, and again soon after each
   * refusal, until a primary takes it.
   */
  private newcomer(): void {
    const primary = this.nodes.find((n) => n.core.primary?.state === "protected")!;
    const old = this.nodes.find((n) => n !== primary)!;
    const silentTicks = this.r.int(200, 500);
    if (this.r.chance(0.5)) old.pausedUntil = this.tick + silentTicks;
    else old.cutUntil = this.tick + silentTicks;
    old.silenced = true;
    const name = ["A", "B", "C"].find((x) => !this.nodes.some((n) => n.name === x))!;
    const c = this.freshBackup(name, this.r.chance(this.options.joinRate));
    c.redialTicks = this.r.int(1, 4);
    c.redialAt = this.tick + this.r.int(60, 160);
    c.giveUpAt = this.tick + 1000;
    this.nodes.push(c);
    this.ownStats.newcomers++;
  }

  /** Whom a backup dials: the primary (the newest epoch's, if two think they are), else the node of the other name. */
  private dialTarget(n: SimNode): SimNode | undefined {
    const primaries = this.nodes.filter((x) => x !== n && x.alive && x.core.role === "primary").sort((a, b) => b.core.epoch - a.core.epoch);
    return primaries[0] ?? this.nodes.find((x) => x !== n && x.name !== n.name);
  }

  /** A message goes out on the sender's connection (its link). */
  private send(from: SimNode, bytes: Uint8Array): void {
    const to = from.link;
    this.ownStats.messages++;
    if (this.tick <= this.partitionUntil || this.tick <= from.cutUntil || this.r.chance(this.options.dropRate)) {
      this.ownStats.dropped++;
      return;
    }
    const copies = this.r.chance(this.options.duplicateRate) ? 2 : 1;
    // a stalled channel delivers what waited once it moves again
    for (let i = 0; i < copies; i++) this.network.push({ at: Math.max(this.tick, from.stallUntil) + this.r.int(1, this.options.delayMaxTicks), from, to, bytes });
  }

  /** A heartbeat datagram: lost like a message (drop, partition, cut), never held by a stalled channel. */
  private sendBeat(from: SimNode, to: string, epoch: number): void {
    if (!this.options.beats) return;
    this.ownStats.beatsSent++;
    if (this.tick <= this.partitionUntil || this.tick <= from.cutUntil || this.r.chance(this.options.dropRate)) return;
    const bytes = encodePeerBeat({ nodeId: from.nodeId, epoch, at: this.tick }, simPeerToken);
    this.network.push({ at: this.tick + this.r.int(1, this.options.delayMaxTicks), from, to: this.everyNode.get(to), bytes, beat: true });
  }

  private deliver(): void {
    const due: InFlight[] = [];
    const later: InFlight[] = [];
    for (const m of this.network) {
      // a paused node reads nothing: its messages wait in its socket buffer
      if (m.at <= this.tick && !(m.to && m.to.alive && this.tick <= m.to.pausedUntil)) due.push(m);
      else later.push(m);
    }
    this.network = later;
    for (const m of due) {
      const to = m.to;
      if (!to || !to.alive || this.tick <= this.partitionUntil || this.tick <= m.from.cutUntil) continue;
      if (m.beat) {
        const beat = decodePeerBeat(Buffer.from(m.bytes), simPeerToken); // through the real codec
        if ("refused" in beat) this.fail(`heartbeat datagram refused: ${beat.refused}`);
        else to.core.peerBeat(beat.nodeId, beat.epoch, this.tick);
        continue;
      }
      // a backup hears only the primary it dialed (a connection it left is closed)
      if (to.core.role === "backup" && to.link !== m.from) continue;
      const msg = decodePeerMessage(m.bytes); // through the real codec
      // a connection the primary has not adopted is a candidate's: only a hello, which the core
      // accepts (the primary adopts it, and cuts the one it replaces) or refuses (closed)
      const candidate = to.core.role === "primary" && to.link !== m.from;
      const p = to.core.primary;
      const silentPeer = candidate && m.from.redialTicks !== undefined && p?.state === "protected" && p.peerId !== undefined ? this.everyNode.get(p.peerId) : undefined;
      const effects = to.core.peerMessage(msg, this.tick, candidate);
      if (candidate && effects.some((e) => e.type === "peer-accept")) to.link = m.from;
      else if (candidate && m.from.redialTicks !== undefined && effects.some((e) => e.type === "peer-refuse")) m.from.redialAt = this.tick + m.from.redialTicks;
      // the newcomer's hello came while the protecting backup, alive, was silent past the failure timeout
      if (silentPeer?.silenced && silentPeer.alive && (p!.state === "claiming" || p!.peerId === m.from.nodeId)) this.ownStats.newcomersAtSilence++;
      this.apply(to, effects);
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
        this.epochWinners.set(c.epoch, c.node.nodeId);
        won = true;
      } else won = false;
      this.apply(c.node, c.node.core.arbiterAnswer(c.epoch, won));
    }
  }

  /**
   * Leased arbiter (as EtcdArbiter.hold): a primary asks every holdRenewTicks (and when it becomes
   * primary); the arbiter, if reachable, confirms the hold for holdTicks from the asking to the
   * winner of its current epoch, or tells a primary of an older epoch that a newer one exists.
   */
  private askHold(n: SimNode): void {
    if (!this.options.leasedArbiter || n.core.role !== "primary") return;
    this.holds.push({ at: this.tick + this.r.int(1, 10), askedAt: this.tick, node: n, epoch: n.core.epoch });
  }

  private answerHolds(): void {
    const due = this.holds.filter((h) => h.at <= this.tick);
    this.holds = this.holds.filter((h) => h.at > this.tick);
    for (const h of due) {
      const n = h.node;
      if (!this.running(n) || this.tick <= this.arbiterDownUntil) continue;
      if (this.arbiterEpoch === h.epoch && this.epochWinners.get(h.epoch) === n.nodeId) {
        this.ownStats.holdsRenewed++;
        if (n.heldUntil !== Number.NEGATIVE_INFINITY && h.askedAt >= n.heldUntil) this.ownStats.holdLapses++; // it had run out meanwhile
        n.heldUntil = Math.max(n.heldUntil, h.askedAt + holdTicks);
        this.apply(n, n.core.arbiterHeld(h.askedAt + holdTicks, this.tick, h.epoch));
      } else if (this.arbiterEpoch > h.epoch && this.epochWinners.get(this.arbiterEpoch) !== n.nodeId) {
        if (n.core.role === "primary") this.ownStats.newerEpochHalts++;
        this.apply(n, n.core.arbiterNewer(this.arbiterEpoch));
      }
    }
  }

  /** Carries out a node's effects, the way LockstepNode does with real I/O. */
  private apply(n: SimNode, effects: NodeEffect[]): void {
    for (const e of effects) {
      switch (e.type) {
        case "send":
          this.send(n, encodePeerMessage(e.message));
          break;
        case "beat":
          this.sendBeat(n, e.to, e.epoch);
          break;
        case "claim-epoch":
          if (n.silenced && n.core.role === "backup") this.ownStats.silencedClaims++;
          n.silenced = false;
          this.claims.push({ at: this.tick + this.r.int(1, 10), node: n, epoch: e.epoch });
          break;
        case "halt":
          this.ownStats.halts++;
          n.alive = false;
          // a halted node never touches the shared disk again (what it handed over may still land)
          n.disk?.scheduler.close();
          this.disk.abandon(n.diskPath);
          // of three nodes, the first to halt leaves for good: the other two go on as the pair
          if (this.nodes.length > 2) this.nodes = this.nodes.filter((x) => x !== n);
          else if (!this.restarts.some((x) => x.name === n.name)) this.restarts.push({ at: this.tick + this.r.int(50, 300), name: n.name });
          break;
        case "start-machine":
          n.machine = e.checkpoint ? ScriptedMachineThread.fromCheckpoint(e.checkpoint.bytes, this.events(n)) : new ScriptedMachineThread(new ScriptedMachine(this.machineOptions), "backup", this.events(n));
          if (e.checkpoint) this.ownStats.checkpointsRestored++;
          if (e.checkpoint && !n.join) this.ownStats.toldToJoin++; // it asked for the log from power-on, which was no longer held
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
            this.send(n, encodePeerMessage({ type: "checkpoint", epoch: n.core.epoch, first: e.first, slice: n.machine!.slice, part, parts, data, console: e.console, inputs: e.inputs, ...(part === 0 ? { consoleTail: e.consoleTail } : {}) }));
          }
          this.apply(n, n.core.checkpointSent());
          break;
        }
        case "became-primary":
          this.becamePrimary(n, e.reissue);
          this.askHold(n);
          break;
        case "disk-submit":
          n.disk?.submit(e.requests, e.slice);
          break;
        case "disk-release":
          this.check.release(n, e.slice);
          n.diskReleased = Math.max(n.diskReleased, e.slice);
          n.disk?.release(e.slice, e.untilMs);
          break;
        case "console-send":
          this.consoles.deliver(n, e.session, e.message);
          break;
        case "console-close":
          this.consoles.closed(n, e.session, e.code);
          break;
        case "peer-accept":
        case "peer-refuse":
          break;
        case "log":
          // SIM_LOG=1 with SIM_SEED=n: what the nodes said, to follow a failing seed
          if (process.env.SIM_LOG) console.log(`tick ${this.tick} ${n.name} ${e.level} ${e.msg} ${JSON.stringify(e.fields ?? {})}`);
          break;
      }
    }
    // a leased arbiter: console output leaves a primary only under a hold the arbiter confirmed
    if (this.options.leasedArbiter && n.core.role === "primary" && n.core.stream.released > n.releasedBytes && this.tick >= n.heldUntil) {
      this.fail(`${n.nodeId} released console output without a hold on epoch ${n.core.epoch} (it lasted until tick ${n.heldUntil})`);
    }
    n.releasedBytes = n.core.stream.released;
  }

  /** As LockstepNode: the port onto the shared disk, then the requests no completion was logged for, again. */
  private becamePrimary(n: SimNode, reissue: DiskRequest[]): void {
    const machine = n.machine!;
    n.disk ??= this.disk.port(n.diskPath, { queueDiskRead: (id, data) => machine.diskRead(id, data), queueDiskWrite: (id) => machine.diskWrite(id) }, (reason) => {
      if (reason) this.ownStats.diskStalls++;
      this.apply(n, n.core.diskStall(reason, this.tick));
    });
    if (reissue.length === 0) return;
    for (const r of reissue) if (r.op === "write") n.writeTags.set(r.id, machine.slice);
    n.disk.submit(reissue, machine.slice);
  }

  private tickNode(n: SimNode): void {
    const m = n.machine;
    // a waiting backup (re)dials the primary and says hello: every 50 ticks, or a newcomer (one
    // connection at a time, as PeerLink) soon after a refusal and 50 ticks after a hello not answered
    const redial = n.redialTicks !== undefined ? n.redialAt !== undefined && this.tick >= n.redialAt : this.tick % 50 === 0;
    if (n.core.backup?.state === "waiting" && redial) {
      n.redialAt = n.redialTicks !== undefined ? this.tick + 50 : undefined;
      n.link = this.dialTarget(n);
      this.apply(n, n.core.peerConnected(this.tick));
    }
    if (this.tick % holdRenewTicks === 0) this.askHold(n);
    this.apply(n, n.core.tick(this.tick, m?.slice ?? 0));
    if (!m || !n.alive || n.core.role === "halted") return;
    const before = m.slice;
    m.step(this.tick, m.role === "primary" ? 1 : this.options.backupSlicesPerTick);
    if (m.slice > before) n.ranAt = this.tick;
    this.check.appliedOnce(n);
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
      this.ownStats.lost++;
    }
  }

  /** After healing: one live primary, whose guest runs (no fault left it waiting for good), and the consoles' checks. */
  /**
   * A node's log stays bounded once it no longer keeps it whole from power-on: a primary holds
   * what its backup has not acknowledged (flow control bounds that), a backup what its machine has
   * not been given.
   */
  private checkLogHeld(n: SimNode): void {
    const held = n.core.logHeld();
    if (!held) return;
    const young = held.fromPowerOn;
    if (!young) this.ownStats.logHeldMax = Math.max(this.ownStats.logHeldMax, held.entries);
    if (!young && held.entries > logHeldEntriesMax) this.fail(`${n.name} holds ${held.entries} log entries (bounded: at most ${logHeldEntriesMax})`);
  }

  private checkEnd(): void {
    const live = this.nodes.filter((n) => n.alive && n.core.role === "primary" && n.core.primary!.state !== "halted");
    if (live.length !== 1) this.fail(`after healing, ${live.length} live primaries`);
    const n = live[0]!;
    if (n.ranAt < this.tick - calmTicks / 4) this.fail(`after healing, the live primary ${n.nodeId} (${n.core.primary!.state}) has run no slice since tick ${n.ranAt}`);
    this.consoles.checkEnd(n);
  }
}
