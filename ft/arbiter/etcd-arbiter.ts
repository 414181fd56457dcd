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
 * Claiming epoch N is one transaction: "epochs/N does not exist and `epoch` has not changed since
 * it was read (and is below N)" then write all three. Exactly one claimant of N can win it.
 *
 * The lease: the primary calls `hold` a few times per TTL. Each call renews the node's lease and
 * re-asserts `holder` for its epoch; it answers how long the hold lasts from the moment the call
 * began (the lease's TTL; etcd expires it no sooner), or that a newer epoch exists. A primary whose
 * hold ran out stops releasing output and disk writes; one that learns of a newer epoch halts.
 *
 * Every call is bounded (`timeoutMs`, as a gRPC deadline and a timer): an unreachable cluster
 * answers undefined, never stalls the node; etcd3's own retries and circuit breaker are off, so a
 * healed partition is seen at the next call.
 */
import { randomUUID } from "node:crypto";
import { noop } from "cockatiel";
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
  private lease: Lease | undefined;
  private leaseId: string | undefined;

  constructor(options: EtcdArbiterOptions) {
    this.timeoutMs = options.timeoutMs ?? 2000;
    this.leaseTtlS = options.leaseTtlS ?? 2;
    this.prefix = options.prefix.replace(/\/+$/, "") + "/";
    this.client = new Etcd3({
      hosts: options.hosts.map((h) => `http://${h}`),
      dialTimeout: this.timeoutMs,
      defaultCallOptions: () => ({ deadline: Date.now() + this.timeoutMs }),
      faultHandling: { host: () => noop, global: noop },
    });
  }

  key(name: string): string {
    return this.prefix + name;
  }

  claim(epoch: number, nodeId: string): Promise<boolean | undefined> {
    return this.bounded(async () => {
      for (let attempt = 0; attempt < 8; attempt++) {
        const current = await this.client.get(this.key("epoch")).exec();
        const kv = current.kvs[0];
        const now = kv ? Number(kv.value.toString()) : 0;
        if (now >= epoch) {
          const owner = await this.client.get(this.key(`epochs/${pad(epoch)}`)).string();
          return owner === nodeId;
        }
        const leaseId = await this.liveLease();
        const txn = this.client
          .if(this.key(`epochs/${pad(epoch)}`), "Create", "==", 0)
          .and(this.key("epoch"), "Mod", "==", kv ? Number(kv.mod_revision) : 0)
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
    await this.bounded(async () => this.client.put(this.key(`nodes/${nodeId}`)).value(JSON.stringify({ nodeId, url })).lease(await this.liveLease()));
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
      const leaseId = await this.liveLease();
      const held = await this.client
        .if(this.key("epoch"), "Value", "==", pad(epoch))
        .and(this.key("epochs/" + pad(epoch)), "Value", "==", nodeId)
        .then(this.client.put(this.key("holder")).value(nodeId).lease(leaseId))
        .commit();
      if (held.succeeded) return { type: "held", leaseMs: this.leaseTtlS * 1000 };
      const current = Number((await this.client.get(this.key("epoch")).string()) ?? 0);
      if (current <= epoch) return undefined;
      // this node's own claim of the next epoch may have just won: not a newer primary
      const owner = await this.client.get(this.key(`epochs/${pad(current)}`)).string();
      return owner === nodeId ? undefined : { type: "newer", epoch: current };
    });
  }

  async wantBackup(want: JoinWanted): Promise<void> {
    await this.bounded(async () => this.client.put(this.key("want")).value(JSON.stringify(want)).lease(await this.liveLease()));
  }

  async backupFound(): Promise<void> {
    await this.bounded(() => this.client.delete().key(this.key("want")).exec().then(() => this.client.delete().key(this.key("join")).exec()));
  }

  registerStandby(nodeId: string, url: string): Promise<boolean | undefined> {
    return this.bounded(async () => {
      await this.client.put(this.key(`standbys/${nodeId}`)).value(JSON.stringify({ nodeId, url })).lease(await this.liveLease());
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
      const taken = await this.client
        .if(this.key("join"), "Create", "==", 0)
        .and(this.key("want"), "Value", "==", text)
        .then(this.client.put(this.key("join")).value(JSON.stringify({ standby: nodeId, ...want })).lease(await this.liveLease()))
        .commit();
      return taken.succeeded ? want : undefined;
    });
  }

  /** Who holds the newest epoch now (its lease alive), or null; undefined if unreachable. */
  holder(): Promise<string | null | undefined> {
    return this.bounded(() => this.client.get(this.key("holder")).string());
  }

  /** This node's lease, granted when first needed and again after it expired. */
  async leaseFor(): Promise<string> {
    if (this.leaseId !== undefined) return this.leaseId;
    const lease = this.client.lease(this.leaseTtlS, { autoKeepAlive: false });
    lease.on("lost", () => {
      if (this.lease === lease) this.dropLease();
    });
    try {
      this.leaseId = await lease.grant();
    } catch (e) {
      void lease.revoke().catch(() => {});
      throw e;
    }
    this.lease = lease;
    return this.leaseId;
  }

  /**
   * This node's lease, renewed now. One that expired at etcd (the node was cut off for longer than
   * the TTL, or the cluster was rebuilt) took its keys with it: a new one is granted.
   */
  async liveLease(): Promise<string> {
    const id = await this.leaseFor();
    try {
      if (Number((await this.lease!.keepaliveOnce()).TTL) > 0) return id;
    } catch (e) {
      if (!(e instanceof EtcdLeaseInvalidError)) throw e;
    }
    this.dropLease();
    return this.leaseFor();
  }

  private dropLease(): void {
    this.lease?.removeAllListeners();
    this.lease = undefined;
    this.leaseId = undefined;
  }

  /** Gives up this node's lease (its holder key and announcements go at once) and closes the client. */
  async close(): Promise<void> {
    const lease = this.lease;
    this.dropLease();
    if (lease) await this.bounded(() => lease.revoke()).catch(() => {});
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
