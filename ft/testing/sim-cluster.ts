/**
 * SimCluster: a whole primary/backup pair, its arbiter, the network between them and a console
 * client, in one process, driven tick by tick from a seed (TigerBeetle's VOPR in miniature). The
 * nodes run the real PrimaryCore, BackupCore and ConsoleStream over the real wire codec with a
 * ScriptedMachine for a guest. Faults come from the seed: message drop, delay (and so reorder),
 * duplication, partitions, node kills and restarts, an unreachable arbiter. Invariants are checked
 * after every tick and the first violation throws with the seed and tick.
 */
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import type { LogHeader } from "../../hypervisor/log-file.js";
import { BackupCore, type BackupEffect } from "../core/backup-core.js";
import { ConsoleStream } from "../core/console-stream.js";
import { PrimaryCore, type CoreEffect } from "../core/primary-core.js";
import { decodePeerMessage, encodePeerMessage } from "../wire/peer-messages.js";
import { ScriptedMachine } from "./scripted-machine.js";
import { SeededRandom } from "./seeded-random.js";

export interface SimOptions {
  seed: number;
  ticks: number;
  dropRate: number;
  duplicateRate: number;
  delayMaxTicks: number;
  /** Chance per tick that a node is killed (then restarted as a fresh backup later). */
  killRate: number;
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
    partitionRate: r.chance(0.4) ? r.next() * 0.002 : 0,
    partitionMaxTicks: r.int(50, 1500),
    arbiterOutageRate: r.chance(0.3) ? r.next() * 0.001 : 0,
  };
}

const heartbeatIntervalMs = 20;
const failureTimeoutMs = 150;

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
  machine = new ScriptedMachine();
  stream = new ConsoleStream(1 << 30);
  primary: PrimaryCore | undefined;
  backup: BackupCore | undefined;
  pendingInput: Array<{ client: string; seq: number; data: Uint8Array }> = [];
  /** The digest after each slice this node ran as primary. */
  digests = new Map<number, string>();
  /** Backup: next received entry to apply; the primary whose log it follows. */
  applied = 0;
  followingDigests: Map<number, string> | undefined;
  constructor(readonly name: string, readonly nodeId: string) {}
}

interface InFlight {
  at: number;
  from: string;
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
  // the console client
  private clientOffset = 0;
  private clientReceived: number[] = [];
  private clientSeq = 0;
  private clientUnacked: Array<{ seq: number; data: Uint8Array }> = [];
  private clientAcked = 0;
  private clientNode: SimNode | undefined;
  readonly stats = { failovers: 0, kills: 0, partitions: 0, halts: 0, messages: 0, dropped: 0, lost: 0 };
  /** The VM is gone: its only live copy died while no backup could take over (unprotected). */
  lost = false;

  constructor(readonly options: SimOptions) {
    this.r = new SeededRandom(options.seed);
    const a = new SimNode("A", "A#0");
    a.primary = new PrimaryCore(this.primaryConfig(a), 1, header);
    this.arbiterEpoch = 1;
    const b = this.freshBackup("B");
    this.nodes = [a, b];
  }

  private primaryConfig(n: SimNode) {
    return { nodeId: n.nodeId, heartbeatIntervalMs, failureTimeoutMs, unackedEntriesMax: 400, lagSlicesMax: 50, logEntriesMax: 1_000_000 };
  }

  private freshBackup(name: string): SimNode {
    const n = new SimNode(name, `${name}#${++this.incarnation}`);
    n.backup = new BackupCore({ nodeId: n.nodeId, heartbeatIntervalMs, failureTimeoutMs, logEntriesMax: 1_000_000 });
    return n;
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
    for (let i = 0; i < 2000; i++, this.tick++) {
      this.step(true);
      if (this.lost) return;
    }
    this.checkEnd();
  }

  private step(calm = false): void {
    const o = this.options;
    if (!calm) this.injectFaults(o);
    for (const rs of this.restarts.filter((x) => x.at <= this.tick)) {
      const i = this.nodes.findIndex((n) => n.name === rs.name);
      this.nodes[i] = this.freshBackup(rs.name);
    }
    this.restarts = this.restarts.filter((x) => x.at > this.tick);
    this.deliver();
    this.answerClaims();
    for (const n of this.nodes) if (n.alive) this.tickNode(n);
    this.client(calm);
    this.checkInvariants();
    this.checkLost();
  }

  private injectFaults(o: SimOptions): void {
    // One failure at a time (what FT promises to survive): kill only while the pair is protected
    // by a backup whose log covers all output that left.
    // (A following backup alone is not protection: its primary may already be dead and undetected.)
    const protectedNow =
      this.nodes.every((n) => n.alive) &&
      this.nodes.some((n) => n.primary?.state === "protected") &&
      this.nodes.some((n) => n.backup?.state === "following" && n.backup.complete >= n.backup.eligibleAt);
    if (protectedNow && this.r.chance(o.killRate)) {
      const victim = this.nodes[this.r.int(0, 1)]!;
      if (victim.alive && this.restarts.length === 0) {
        victim.alive = false;
        this.stats.kills++;
        this.restarts.push({ at: this.tick + this.r.int(100, 600), name: victim.name });
      }
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
    for (let i = 0; i < copies; i++) this.network.push({ at: this.tick + this.r.int(1, this.options.delayMaxTicks), from: from.nodeId, to: to.name, bytes });
  }

  private deliver(): void {
    const due = this.network.filter((m) => m.at <= this.tick);
    this.network = this.network.filter((m) => m.at > this.tick);
    for (const m of due) {
      const to = this.nodes.find((n) => n.name === m.to);
      if (!to || !to.alive || this.tick <= this.partitionUntil) continue;
      const msg = decodePeerMessage(m.bytes); // through the real codec
      if (to.primary) this.apply(to, to.primary.step(msg, this.tick));
      else if (to.backup) this.apply(to, to.backup.step(msg, this.tick));
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
      if (c.node.primary) this.apply(c.node, c.node.primary.arbiterAnswer(c.epoch, won));
      else if (c.node.backup) this.apply(c.node, c.node.backup.arbiterAnswer(c.epoch, won));
    }
  }

  private apply(n: SimNode, effects: Array<CoreEffect | BackupEffect>): void {
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
        case "go-live":
          this.takeOver(n, e.epoch);
          break;
        case "header":
        case "log":
          break;
      }
    }
  }

  /** The backup won the epoch: replay everything received, then become an unprotected primary. */
  private takeOver(n: SimNode, epoch: number): void {
    const b = n.backup!;
    const last = b.entries.at(-1);
    for (let guard = 0; last && (n.machine.slice < last.slice || n.applied < b.entries.length); guard++) {
      if (guard > 10_000_000) this.fail(`takeover of ${n.nodeId} does not converge`);
      this.backupStep(n, b.entries.length);
    }
    n.primary = new PrimaryCore(this.primaryConfig(n), epoch, header, b.entries);
    n.primary.noteSlice(n.machine.slice);
    n.backup = undefined;
    n.digests = new Map();
    this.stats.failovers++;
  }

  private tickNode(n: SimNode): void {
    if (n.primary) {
      const p = n.primary;
      this.apply(n, p.tick(this.tick));
      if (p.state === "halted") return;
      if (!p.mayRun(n.machine.slice)) return;
      const m = n.machine;
      const at = { slice: m.slice, icount: m.icount };
      for (const input of n.pendingInput) {
        if (input.seq <= (n.stream.appliedInput.get(input.client) ?? 0)) continue; // applied already: exactly once
        const entry: LogEntry = { kind: "serial", ...at, data: input.data, source: { client: input.client, seq: input.seq } };
        m.apply(entry);
        p.append(entry);
        n.stream.inputApplied(m.slice, input.client, input.seq);
      }
      n.pendingInput = [];
      const out = m.runSlice();
      p.noteSlice(m.slice);
      n.digests.set(m.slice, m.digest());
      if (out) n.stream.append(m.slice, out);
      p.append({ kind: "progress", slice: m.slice, icount: m.icount });
      this.apply(n, p.flush());
      this.release(n);
    } else if (n.backup) {
      const b = n.backup;
      if (b.state === "waiting" && this.tick % 50 === 0) this.apply(n, b.connected(this.tick));
      this.apply(n, b.tick(this.tick));
      if (b.state !== "following") return;
      for (let i = 0; i < 5 && n.machine.slice < b.complete; i++) this.backupStep(n, Number.POSITIVE_INFINITY);
      b.setExecuted(n.machine.slice);
    }
  }

  /** Applies the entries at the backup's current boundary, then runs one slice if the log allows. */
  private backupStep(n: SimNode, entryLimit: number): void {
    const b = n.backup!;
    const m = n.machine;
    while (n.applied < Math.min(entryLimit, b.entries.length) && b.entries[n.applied]!.slice === m.slice) {
      const e = b.entries[n.applied++]!;
      if (e.icount !== m.icount) this.fail(`backup ${n.nodeId} diverged: entry icount ${e.icount}, machine ${m.icount} at slice ${m.slice}`);
      m.apply(e);
      if (e.kind === "serial" && e.source) n.stream.inputApplied(m.slice, e.source.client, e.source.seq);
    }
    const next = b.entries[n.applied];
    if (!next && m.slice >= (b.entries.at(-1)?.slice ?? 0)) return;
    const out = m.runSlice();
    if (out) n.stream.append(m.slice, out);
    const primary = this.nodes.find((x) => x.primary && x.primary.epoch === b.epoch && x.nodeId !== n.nodeId);
    const theirs = primary?.digests.get(m.slice);
    if (theirs !== undefined && m.slice <= b.complete && theirs !== m.digest()) {
      this.fail(`backup ${n.nodeId} digest ${m.digest()} differs from primary ${primary!.nodeId}'s ${theirs} at acknowledged slice ${m.slice}`);
    }
  }

  private release(n: SimNode): void {
    const due = n.stream.release(n.primary!.releasableSlice());
    if (n === this.clientNode) for (const a of due) if (a.client === "client") this.onInack(a.seq);
  }

  private onInack(seq: number): void {
    this.clientAcked = Math.max(this.clientAcked, seq);
    this.clientUnacked = this.clientUnacked.filter((u) => u.seq > seq);
  }

  /** The console client: follows a live primary, reads released output, types and resends input. */
  private client(calm: boolean): void {
    const live = this.nodes.filter((n) => n.alive && n.primary && n.primary.state !== "halted");
    if (!this.clientNode || !live.includes(this.clientNode)) {
      this.clientNode = live.length ? live[this.r.int(0, live.length - 1)] : undefined;
      if (!this.clientNode) return;
      // attach: the new server must agree with what we already have
      const s = this.clientNode.stream;
      const have = s.read(Math.max(s.retainedFrom, 0), Number.MAX_SAFE_INTEGER)!;
      for (let i = 0; i < have.data.length && have.offset + i < this.clientOffset; i++) {
        if (have.data[i] !== this.clientReceived[have.offset + i]) this.fail(`console output contradicts at offset ${have.offset + i} after moving to ${this.clientNode.nodeId}`);
      }
      for (const u of this.clientUnacked) this.clientNode.pendingInput.push({ client: "client", seq: u.seq, data: u.data });
    }
    const n = this.clientNode;
    const chunk = n.stream.read(this.clientOffset);
    if (!chunk) this.fail(`console offset ${this.clientOffset} no longer retained by ${n.nodeId}`);
    for (const b of chunk.data) this.clientReceived.push(b);
    this.clientOffset += chunk.data.length;
    if (!calm && this.r.chance(0.02) && this.clientUnacked.length < 20) {
      const u = { seq: ++this.clientSeq, data: new TextEncoder().encode(`in${this.clientSeq}`) };
      this.clientUnacked.push(u);
      n.pendingInput.push({ client: "client", seq: u.seq, data: u.data });
    }
  }

  private checkInvariants(): void {
    const live = this.nodes.filter((n) => n.alive && (n.primary?.state === "unprotected" || n.primary?.state === "joining"));
    if (live.length > 1) this.fail(`two live primaries: ${live.map((n) => `${n.nodeId} epoch ${n.primary!.epoch}`).join(", ")}`);
    for (const n of live) if (n.primary!.epoch !== this.arbiterEpoch) this.fail(`live primary ${n.nodeId} has epoch ${n.primary!.epoch} but the arbiter is at ${this.arbiterEpoch}`);
    // output rule: a protected primary released nothing beyond what its backup's log covers
    for (const n of this.nodes) {
      const p = n.primary;
      if (!n.alive || !p || (p.state !== "protected" && p.state !== "claiming")) continue;
      const peerId = p.protectedBy ?? undefined;
      const peer = this.nodes.find((x) => x.nodeId === peerId);
      if (!peer?.backup || peer.backup.state === "waiting") continue;
      // beyond what left while unprotected (eligibleAt), nothing leaves that the backup's log lacks
      const bound = Math.max(peer.backup.complete, peer.backup.eligibleAt);
      if (p.releasableSlice() > bound) this.fail(`primary ${n.nodeId} may release slice ${p.releasableSlice()} but backup ${peer.nodeId} is complete through ${peer.backup.complete}`);
    }
  }

  /**
   * A VM is lost when no node can ever be primary again: no primary is alive and no backup is
   * following (or claiming) with a log that covers the output that already left. That happens only
   * when a primary dies while unprotected, which the protocol cannot prevent; it must never happen
   * while a caught-up backup exists (then it is a bug, caught as "two"/"zero" live primaries).
   */
  private checkLost(): void {
    const primaries = this.nodes.some((n) => n.alive && n.primary && n.primary.state !== "halted");
    const heirs = this.nodes.some((n) => n.alive && n.backup && (n.backup.state === "following" || n.backup.state === "claiming") && n.backup.complete >= n.backup.eligibleAt);
    const pendingTakeover = this.claims.length > 0;
    if (!primaries && !heirs && !pendingTakeover) {
      this.lost = true;
      this.stats.lost++;
    }
  }

  private checkEnd(): void {
    const live = this.nodes.filter((n) => n.alive && n.primary && n.primary.state !== "halted");
    if (live.length !== 1) this.fail(`after healing, ${live.length} live primaries`);
    const n = live[0]!;
    const all = n.stream.read(0, Number.MAX_SAFE_INTEGER)!;
    for (let i = 0; i < this.clientOffset; i++) if (all.data[i] !== this.clientReceived[i]) this.fail(`console byte ${i} differs from the live primary's stream`);
    const seen = new Set<number>();
    for (const a of n.machine.appliedInputs) {
      if (seen.has(a.seq)) this.fail(`input ${a.seq} applied twice`);
      seen.add(a.seq);
    }
    for (let s = 1; s <= this.clientAcked; s++) if (!seen.has(s)) this.fail(`acknowledged input ${s} was lost`);
  }
}
