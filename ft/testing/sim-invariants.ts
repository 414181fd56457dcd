/**
 * SimInvariants: what must hold in a simulated pair whatever the faults, checked as things happen
 * (the cluster calls in at every release, disk write, slice and tick). The first violation throws
 * (through the world's `fail`, with the seed and tick).
 *
 *   - Never two live primaries; a live primary holds the arbiter's epoch.
 *   - The output rule, with no exemption, at every release of console output and input acks and at
 *     every disk write leaving its node: a protected primary's output of a slice leaves only when the
 *     log of every backup that can take over is complete through that slice (or it had left before
 *     the backup protected it): the one that won the next epoch if one did, whichever backup the
 *     primary talks to; else its backup and any other live backup of its epoch eligible to claim
 *     the next (a primary that slid over to a newcomer while its silent backup could still win).
 *     A write also leaves only once its core released the slice the machine issued it in, and never
 *     from a primary after a newer epoch's primary went live.
 *   - The backup's state after every slice its log covers equals the primary's.
 *   - Console input is applied at most once by any machine (at least once: SimConsoles).
 *   - The shared disk holds, sector by sector, what the live primary's guest may expect: the newest
 *     write it saw completed or a newer one still pending (so no write acknowledged to the guest is
 *     lost, and writes to a sector land in order); every write lands whole, with the same data
 *     wherever it was issued (a re-issue after a takeover equals the original); and the live
 *     primary's guest never read what no disk could have returned.
 */
import { sectorWriter, simSectorBytes } from "./scripted-guest-disk.js";
import type { SimNode } from "./sim-node.js";

export interface InvariantWorld {
  /** The nodes running now (dead ones until they restart). */
  nodes(): readonly SimNode[];
  /** Any node that ever ran, by node id. */
  everyNode(nodeId: string): SimNode | undefined;
  arbiterEpoch(): number;
  /** The node id that won `epoch` at the arbiter, if any did. */
  epochWinner(epoch: number): string | undefined;
  fail(what: string): never;
}

export class SimInvariants {
  /** The data each disk write landed with (a write issued again must carry the same data). */
  private landed = new Map<number, Uint8Array>();
  /** Per sector of the shared disk: the write it holds (0: none; its bytes were checked when it landed). */
  private sectorHolds: number[];

  constructor(
    private readonly world: InvariantWorld,
    sectors: number,
  ) {
    this.sectorHolds = new Array<number>(sectors).fill(0);
  }

  private fail(what: string): never {
    return this.world.fail(what);
  }

  /** After every tick. */
  tick(): void {
    const live = this.world.nodes().filter((n) => n.alive && (n.core.primary?.state === "unprotected" || n.core.primary?.state === "joining"));
    if (live.length > 1) this.fail(`two live primaries: ${live.map((n) => `${n.nodeId} epoch ${n.core.epoch}`).join(", ")}`);
    const epoch = this.world.arbiterEpoch();
    for (const n of live) if (n.core.epoch !== epoch) this.fail(`live primary ${n.nodeId} has epoch ${n.core.epoch} but the arbiter is at ${epoch}`);
    this.disk();
  }

  /** The backup's state after every slice its log covers equals the primary's after that slice. */
  backupDigest(n: SimNode, slice: number, digest: string): void {
    const b = n.core.backup;
    if (!b) return;
    const primary = this.world.nodes().find((x) => x.core.primary && x.core.epoch === b.epoch && x.nodeId !== n.nodeId);
    const theirs = primary?.digests.get(slice);
    if (theirs !== undefined && slice <= b.complete && theirs !== digest) {
      this.fail(`backup ${n.nodeId} digest ${digest} differs from primary ${primary!.nodeId}'s ${theirs} at acknowledged slice ${slice}`);
    }
  }

  /** No console input reaches a machine twice (checked as it happens, losses or not). */
  appliedOnce(n: SimNode): void {
    const applied = n.machine!.machine.appliedInputs;
    for (; n.appliedSeen < applied.length; n.appliedSeen++) {
      const a = applied[n.appliedSeen]!;
      if (applied.findIndex((x) => x.client === a.client && x.seq === a.seq) !== n.appliedSeen) this.fail(`input ${a.seq} of ${a.client} applied twice on ${n.nodeId}`);
    }
  }

  /**
   * The output rule, with no exemption: while a primary is protected (or claiming, having been), its
   * output of a slice may leave only when the log of every backup that can take over from it is
   * complete through that slice, or when it had left before the backup was protecting. That is the
   * one that won the next epoch if one did (whichever backup the primary talks to); else its own
   * backup and any other live backup of its epoch still eligible to claim the next one (a silent
   * one the primary slid away from, to a newcomer). A backup that died or took over since still
   * counts, with the log it had then (what it acknowledged cannot be more). What is wrong, if anything.
   */
  private outputRuleBroken(n: SimNode, slice: number): string | undefined {
    const p = n.core.primary;
    if (!p || (p.state !== "protected" && p.state !== "claiming")) return undefined;
    const epoch = n.core.epoch;
    const next = this.world.epochWinner(epoch + 1);
    if (next !== undefined && next !== p.peerId) {
      const complete = this.world.everyNode(next)!.backupComplete;
      if (slice <= Math.max(complete, p.protectedFrom)) return undefined;
      return `epoch ${epoch + 1} went to ${next} (not to its backup ${p.peerId}), whose log is complete through ${complete} (released ${p.protectedFrom} before protection)`;
    }
    const peer = p.peerId !== undefined ? this.world.everyNode(p.peerId) : undefined;
    if (!peer) return `its backup ${p.peerId} is unknown`;
    const complete = peer.backupComplete;
    if (slice > Math.max(complete, p.protectedFrom)) return `backup ${peer.nodeId} is complete through ${complete} (released ${p.protectedFrom} before protection)`;
    if (next !== undefined) return undefined;
    for (const x of this.world.nodes()) {
      const b = x.core.backup;
      if (x === peer || !x.alive || !b || b.epoch !== epoch || (b.state !== "following" && b.state !== "claiming") || b.complete < b.eligibleAt) continue;
      if (slice > b.complete) return `${x.nodeId}, a backup of epoch ${epoch} that can still claim epoch ${epoch + 1} (its backup is ${peer.nodeId}), is complete through ${b.complete}`;
    }
    return undefined;
  }

  /** At every release (console output, input acks, disk writes) that moves forward. */
  release(n: SimNode, slice: number): void {
    if (!n.core.primary || slice <= n.releasedMax) return; // nothing new leaves
    n.releasedMax = slice;
    const broken = this.outputRuleBroken(n, slice);
    if (broken) this.fail(`primary ${n.nodeId} released slice ${slice} but ${broken}`);
  }

  /** A disk write leaves node `n` for the shared disk. */
  writeIssued(n: SimNode, offset: number, data: Uint8Array): void {
    if (!n.alive) this.fail(`a write reached the disk from ${n.nodeId}, which is not running`);
    const id = new DataView(data.buffer, data.byteOffset).getUint32(0, true);
    const tag = n.writeTags.get(id);
    if (tag === undefined) this.fail(`${n.nodeId} wrote request ${id} at ${offset}, which its machine never issued`);
    if (tag > n.diskReleased) this.fail(`${n.nodeId} wrote request ${id} of slice ${tag} to the disk; its core released writes only through slice ${n.diskReleased}`);
    const broken = this.outputRuleBroken(n, tag);
    if (broken) this.fail(`primary ${n.nodeId} wrote request ${id} of slice ${tag} to the disk but ${broken}`);
    const successor = this.world.nodes().find((x) => x.alive && x.core.role === "primary" && x.core.epoch > n.core.epoch);
    if (successor) this.fail(`${n.nodeId} (epoch ${n.core.epoch}) wrote request ${id} to the disk after ${successor.nodeId} went live in epoch ${successor.core.epoch}`);
  }

  /** A write landed: whole sectors of one request, with the data it had wherever it was issued. */
  writeLanded(offset: number, data: Uint8Array): void {
    for (let at = 0; at < data.length; at += simSectorBytes) {
      const id = sectorWriter(data, at, (offset + at) / simSectorBytes);
      if (id <= 0) this.fail(`a write at ${offset} carries a malformed sector`);
      this.sectorHolds[(offset + at) / simSectorBytes] = id;
    }
    const id = new DataView(data.buffer, data.byteOffset).getUint32(0, true);
    const before = this.landed.get(id);
    if (!before) this.landed.set(id, data.slice());
    else if (before.length !== data.length || before.some((b, i) => b !== data[i])) this.fail(`write ${id} landed again with other data (a re-issue that differs from the original)`);
    this.disk(); // at once: a write must not land out of order even if a newer one covers it soon
  }

  /** The shared disk against the live primary's guest (the primary of the arbiter's epoch). */
  private disk(): void {
    const epoch = this.world.arbiterEpoch();
    const live = this.world.nodes().find((n) => n.alive && n.core.role === "primary" && n.core.primary!.state !== "halted" && n.core.epoch === epoch && n.machine?.role === "primary");
    if (!live) return;
    const guest = live.machine!.machine.disk;
    if (guest.anomalies.length > 0) this.fail(`the live primary ${live.nodeId}'s guest: ${guest.anomalies[0]}`);
    for (let s = 0; s < guest.sectors; s++) {
      const got = this.sectorHolds[s]!;
      if (guest.mayHold(s, got)) continue;
      const allowed = guest.allowedContent(s);
      this.fail(`shared disk sector ${s} holds write ${got}; the live primary ${live.nodeId}'s guest saw write ${allowed[0]} completed${allowed.length > 1 ? ` and has ${allowed.slice(1).join(", ")} pending` : ""}`);
    }
  }
}
