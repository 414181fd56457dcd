/**
 * EtcdArbiter: the arbiter for hosts that share only a network. The epoch test-and-set is an etcd
 * transaction (as Kubernetes' and Patroni's leader elections are), and the winner holds a lease.
 *
 * Keys, all under the pair's prefix (one prefix per guest):
 *   id               a random id made once (Arbiter.identity; both nodes of a pair show the same)
 *   epoch            the newest epoch claimed, zero-padded (never leased: epochs only grow)
 *   epochs/<N>       who claimed epoch N (kept, so a claim whose reply was lost is decided later)
 *   holder           the node holding the newest epoch, attached to that node's lease
 *   nodes/<id>       where a node listens (attached to its lease: gone when the node is)
 *   standbys/<id>    a standby of this pair (attached to its lease)
 *   want             a primary that has run unprotected for a moment wants a backup (its lease)
 *   join             the one standby that took `want` (its lease: if it dies while joining, the
 *                    key goes and another standby takes the request)
 *
 * Claiming epoch N is one transaction: "epochs/N does not exist, `epoch` and `holder` have not
 * changed since they were read" then write all three, where what was read says `epoch` < N and
 * `holder` is gone (its lease ran out), the claimant, or the primary the claimant followed as its
 * backup (`supersedes`: that primary's disk lease and the output rule stop it already). Exactly one
 * claimant of N can win it; a claimant facing another live holder gets no answer yet (undefined)
 * and asks again, so a second `lockstep primary` on a running pair's prefix never wins while the
 * pair's primary holds its epoch, even when it cannot reach that primary.
 *
 * The lease: every node keeps one lease alive (renewed every TTL/4 by a timer here), and keys it
 * owns go with it: its announcement, a standby's registration, the standby's `join`. A lease that
 * expired at etcd (the node was cut off for longer than the TTL) is replaced, and the announcement
 * and registration are written again. The primary calls `hold` a few times per TTL: it renews the
 * lease and re-asserts `holder` for its epoch, and answers how long the hold lasts from the moment
 * the call began (the TTL etcd granted; etcd expires the lease no sooner), or that a newer epoch
 * exists. A primary whose hold ran out stops releasing output and disk writes; one that learns of
 * a newer epoch halts.
 *
 * Every call is bounded (`timeoutMs`, as a gRPC deadline and a timer): an unreachable cluster
 * answers undefined, never stalls the node. A call that fails is tried once more on another member
 * (of a cluster of three, one may be down), and a member that failed is skipped for a second.
 */
import { randomUUID } from "node:crypto";
import { ConsecutiveBreaker, circuitBreaker, handleAll, noop, retry } from "cockatiel";
import { Etcd3, EtcdLeaseInvalidError, type Lease } from "etcd3";
import type { Arbiter, ArbiterHold, JoinWanted, StandbyBoard } from "./arbiter.js";

export interface EtcdArbiterOptions {
  /** host:port of each etcd member. */
  hosts: string[];
  /** Key prefix of this pair. */
  prefix: string;
  /** Bound on one call (ms). */
  timeoutMs?: number;
  /** Lease TTL in whole seconds (etcd's unit). */
  leaseTtlS?: number;
}

const pad = (n: number) => String(n).padStart(12, "0");
const timedOut = Symbol("timed out");

export class EtcdArbiter implements Arbiter, StandbyBoard {
  readonly client: Etcd3;
  readonly prefix: string;
  readonly leaseTtlS: number;
  private readonly timeoutMs: number;
  private readonly hosts: number;
  private lease: Lease | undefined;
  private leaseId: string | undefined;
  private granting: Promise<string> | undefined;
  private grants = 0;
  private keeper: NodeJS.Timeout | undefined;
  /** Keys on this node's lease, written again after a new lease: always, or only if absent (`join`). */
  private readonly owned = new Map<string, string>();
  private readonly ownedIfAbsent = new Map<string, string>();
  /** The `want` this primary posted last (it deletes only its own). */
  private posted: string | undefined;
  private board: Promise<void> = Promise.resolve();

  constructor(options: EtcdArbiterOptions) {
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.leaseTtlS = options.leaseTtlS ?? 2;
    this.hosts = options.hosts.length;
    this.prefix = options.prefix.replace(/\/+$/, "") + "/";
    this.client = new Etcd3({
      hosts: options.hosts.map((h) => `http://${h}`),
      dialTimeout: this.timeoutMs,
      defaultCallOptions: () => ({ deadline: Date.now() + this.timeoutMs }),
      faultHandling: {
        host: () => circuitBreaker(handleAll, { halfOpenAfter: 1000, breaker: new ConsecutiveBreaker(1) }),
        global: options.hosts.length > 1 ? retry(handleAll, { maxAttempts: 1 }) : noop,
      },
    });
  }

  key(name: string): string {
    return this.prefix + name;
  }

  claim(epoch: number, nodeId: string, supersedes?: string): Promise<boolean | undefined> {
    return this.bounded(async () => {
      for (let attempt = 0; attempt < 8; attempt++) {
        const [current, holder] = await Promise.all([this.client.get(this.key("epoch")).exec(), this.client.get(this.key("holder")).exec()]);
        const kv = current.kvs[0];
        const now = kv ? Number(kv.value.toString()) : 0;
        if (now >= epoch) {
          const owner = await this.client.get(this.key(`epochs/${pad(epoch)}`)).string();
          return owner === nodeId;
        }
        const held = holder.kvs[0];
        const heldBy = held?.value.toString();
        // another node holds the epoch and its lease is alive: not before it runs out
        if (heldBy !== undefined && heldBy !== nodeId && heldBy !== supersedes) return undefined;
        const leaseId = (await this.liveLease()).id;
        const txn = this.client
          .if(this.key(`epochs/${pad(epoch)}`), "Create", "==", 0)
          .and(this.key("epoch"), "Mod", "==", kv ? Number(kv.mod_revision) : 0)
          .and(this.key("holder"), "Mod", "==", held ? Number(held.mod_revision) : 0)
          .then(
            this.client.put(this.key(`epochs/${pad(epoch)}`)).value(nodeId),
            this.client.put(this.key("epoch")).value(pad(epoch)),
            this.client.put(this.key("holder")).value(nodeId).lease(leaseId),
          );
        if ((await txn.commit()).succeeded) return true;
      }
      return undefined;
    });
  }

  current(): Promise<number | undefined> {
    return this.bounded(async () => Number((await this.client.get(this.key("epoch")).string()) ?? 0));
  }

  identity(): Promise<string | undefined> {
    return this.bounded(async () => {
      // the first node makes it (exactly one of two racing ones does)
      await this.client.if(this.key("id"), "Create", "==", 0).then(this.client.put(this.key("id")).value(randomUUID())).commit();
      const id = await this.client.get(this.key("id")).string();
      return id === null ? undefined : `etcd:${id}`;
    });
  }

  async announce(nodeId: string, url: string): Promise<void> {
    this.owned.set(this.key(`nodes/${nodeId}`), JSON.stringify({ nodeId, url }));
    await this.bounded(async () => this.client.put(this.key(`nodes/${nodeId}`)).value(JSON.stringify({ nodeId, url })).lease((await this.liveLease()).id));
  }

  async announced(): Promise<Array<{ nodeId: string; url: string }>> {
    const all = (await this.bounded(() => this.client.getAll().prefix(this.key("nodes/")).strings())) ?? {};
    const nodes: Array<{ nodeId: string; url: string }> = [];
    for (const text of Object.values(all)) {
      try {
        const v = JSON.parse(text) as { nodeId?: unknown; url?: unknown };
        if (typeof v.nodeId === "string" && typeof v.url === "string") nodes.push({ nodeId: v.nodeId, url: v.url });
      } catch {
        // foreign: not a node
      }
    }
    return nodes;
  }

  hold(nodeId: string, epoch: number): Promise<ArbiterHold | undefined> {
    return this.bounded(async (): Promise<ArbiterHold | undefined> => {
      const { id, ttlMs } = await this.liveLease();
      const held = await this.client
        .if(this.key("epoch"), "Value", "==", pad(epoch))
        .and(this.key("epochs/" + pad(epoch)), "Value", "==", nodeId)
        .then(this.client.put(this.key("holder")).value(nodeId).lease(id))
        .commit();
      if (held.succeeded) return { type: "held", leaseMs: ttlMs };
      const current = Number((await this.client.get(this.key("epoch")).string()) ?? 0);
      if (current < epoch) return { type: "forgotten", epoch: current };
      if (current === epoch) return undefined;
      // this node's own claim of the next epoch may have just won: not a newer primary
      const owner = await this.client.get(this.key(`epochs/${pad(current)}`)).string();
      return owner === nodeId ? undefined : { type: "newer", epoch: current };
    });
  }

  wantBackup(want: JoinWanted): Promise<void> {
    return this.onBoard(async () => {
      const text = JSON.stringify(want);
      this.posted = text;
      await this.client.put(this.key("want")).value(text).lease((await this.liveLease()).id);
    });
  }

  backupFound(): Promise<void> {
    return this.onBoard(async () => {
      const text = this.posted;
      if (text === undefined) return;
      // only this primary's own post goes, with the claim of the standby that answered it
      const cleared = await this.client.if(this.key("want"), "Value", "==", text).then(this.client.delete().key(this.key("want")), this.client.delete().key(this.key("join"))).commit();
      if (cleared.succeeded || (await this.client.get(this.key("want")).string()) !== text) this.posted = undefined;
    });
  }

  registerStandby(nodeId: string, url: string): Promise<boolean | undefined> {
    const key = this.key(`standbys/${nodeId}`);
    this.owned.set(key, JSON.stringify({ nodeId, url }));
    return this.bounded(async () => {
      await this.client.put(key).value(this.owned.get(key)!).lease((await this.liveLease()).id);
      return true;
    });
  }

  takeJoin(nodeId: string): Promise<JoinWanted | undefined> {
    return this.bounded(async () => {
      const text = await this.client.get(this.key("want")).string();
      if (text === null) return undefined;
      let want: JoinWanted;
      try {
        want = JSON.parse(text) as JoinWanted;
      } catch {
        return undefined;
      }
      if (typeof want.url !== "string" || typeof want.primary !== "string" || typeof want.epoch !== "number") return undefined;
      const join = JSON.stringify({ standby: nodeId, ...want });
      // only a post of the primary that holds the newest epoch now (not one of a primary that died)
      const taken = await this.client
        .if(this.key("join"), "Create", "==", 0)
        .and(this.key("want"), "Value", "==", text)
        .and(this.key("epoch"), "Value", "==", pad(want.epoch))
        .and(this.key("holder"), "Value", "==", want.primary)
        .then(this.client.put(this.key("join")).value(join).lease((await this.liveLease()).id))
        .commit();
      if (!taken.succeeded) return undefined;
      this.ownedIfAbsent.set(this.key("join"), join);
      return want;
    });
  }

  /** Standby: gives back the request it took (it will not join after all). */
  giveBackJoin(): Promise<void> {
    const join = this.ownedIfAbsent.get(this.key("join"));
    this.ownedIfAbsent.delete(this.key("join"));
    if (join === undefined) return Promise.resolve();
    return this.bounded(() => this.client.if(this.key("join"), "Value", "==", join).then(this.client.delete().key(this.key("join"))).commit()).then(() => {});
  }

  /** Who holds the newest epoch now (its lease alive), or null; undefined if unreachable. */
  holder(): Promise<string | null | undefined> {
    return this.bounded(() => this.client.get(this.key("holder")).string());
  }

  /** This node's lease id, granted when first needed and again after it expired (one grant at a time). */
  leaseFor(): Promise<string> {
    if (this.leaseId !== undefined) return Promise.resolve(this.leaseId);
    this.granting ??= (async () => {
      const lease = this.client.lease(this.leaseTtlS, { autoKeepAlive: false });
      try {
        const id = await lease.grant();
        this.lease = lease;
        this.leaseId = id;
        this.keepLeaseAlive();
        if (this.grants++ > 0) void this.putOwnedAgain(id);
        return id;
      } catch (e) {
        void lease.revoke().catch(() => {});
        throw e;
      } finally {
        this.granting = undefined;
      }
    })();
    return this.granting;
  }

  /**
   * This node's lease, renewed now, with the TTL etcd gives it. One that expired at etcd (the node
   * was cut off for longer than the TTL, or the cluster was rebuilt) took its keys with it: a new
   * one is granted.
   */
  async liveLease(): Promise<{ id: string; ttlMs: number }> {
    const id = await this.leaseFor();
    const lease = this.lease!;
    try {
      const ttl = Number((await this.keepaliveOnce(lease)).TTL);
      if (ttl > 0) return { id, ttlMs: ttl * 1000 };
    } catch (e) {
      if (!(e instanceof EtcdLeaseInvalidError)) throw e;
    }
    this.dropLease(lease);
    const fresh = await this.leaseFor();
    return { id: fresh, ttlMs: this.leaseTtlS * 1000 };
  }

  /**
   * One keepalive, tried once more if it failed: it is a stream, which etcd3 opens on one member
   * without the retry on another that its unary calls get (the failed member's circuit is open by
   * now, so the second goes to another).
   */
  private async keepaliveOnce(lease: Lease): ReturnType<Lease["keepaliveOnce"]> {
    try {
      return await lease.keepaliveOnce();
    } catch (e) {
      if (e instanceof EtcdLeaseInvalidError || this.hosts < 2) throw e;
      return await lease.keepaliveOnce();
    }
  }

  /** Every node keeps its lease alive (a backup's announcement, a joining standby's claim go with it). */
  private keepLeaseAlive(): void {
    if (this.keeper) return;
    this.keeper = setInterval(() => void this.bounded(() => this.liveLease()), (this.leaseTtlS * 1000) / 4);
    this.keeper.unref();
  }

  /** After a new lease: the keys this node owns, written again on it. */
  private async putOwnedAgain(id: string): Promise<void> {
    for (const [key, value] of this.owned) await this.bounded(() => this.client.put(key).value(value).lease(id).exec());
    for (const [key, value] of this.ownedIfAbsent) await this.bounded(() => this.client.if(key, "Create", "==", 0).then(this.client.put(key).value(value).lease(id)).commit());
  }

  private dropLease(lease: Lease): void {
    if (this.lease !== lease) return; // another call replaced it already
    lease.removeAllListeners();
    this.lease = undefined;
    this.leaseId = undefined;
  }

  /** Standby board operations of this node, one at a time, in order. */
  private onBoard(op: () => Promise<void>): Promise<void> {
    const next = this.board.then(() => this.bounded(op)).then(() => {});
    this.board = next;
    return next;
  }

  /** Gives up this node's lease (its holder key and announcements go at once) and closes the client. */
  async close(): Promise<void> {
    clearInterval(this.keeper);
    this.keeper = undefined;
    const lease = this.lease;
    if (lease) {
      this.dropLease(lease);
      await this.bounded(() => lease.revoke()).catch(() => {});
    }
    this.client.close();
  }

  private async bounded<T>(f: () => Promise<T>): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([
      f().catch(() => timedOut),
      new Promise<typeof timedOut>((resolve) => (timer = setTimeout(() => resolve(timedOut), this.timeoutMs))),
    ]);
    clearTimeout(timer);
    return r === timedOut ? undefined : (r as T);
  }
}
