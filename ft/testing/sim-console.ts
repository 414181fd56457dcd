/**
 * SimConsoles: the console clients of a simulated pair, each behaving like ConsoleClient: it follows
 * whichever node is live, keeps the output offset it reached and the input not yet acknowledged, and
 * on every (re)connection attaches at that offset and resends all that input right behind the attach,
 * before it reads any reply (so input the node already applied, or already acknowledged on the
 * attach, reaches the core again: the core must drop it). Faults: connections drop (the client
 * reconnects at once, perhaps to the same node); the node it talks to dies, halts or is superseded.
 *
 * One client (the reader) lives through the whole run, types now and then and keeps every output
 * byte; typists come and go, each with a fresh id, type a few inputs and leave once all are
 * acknowledged — so input with low sequence numbers, which only the log can tell apart from new
 * input after a takeover, is in flight often.
 *
 * Checked as it happens: output arrives at the offset expected, with no gap or repeat, and agrees
 * with what the client had when it moves to another node; every acknowledgement covers input that
 * the acknowledging node's machine applied exactly once; on every takeover, the new primary's machine
 * applied every acknowledged input exactly once. At the end: the same on the last primary, and every
 * client attached to it has had all its input acknowledged (none was dropped for good).
 */
import type { ConsoleServerMessage } from "../wire/console-messages.js";
import { decodeConsoleServerMessage, encodeConsoleMessage } from "../wire/console-messages.js";
import type { NodeEffect } from "../core/node-core.js";
import type { SeededRandom } from "./seeded-random.js";
import type { SimNode } from "./sim-node.js";

export interface ConsoleWorld {
  readonly r: SeededRandom;
  /** Nodes a client may reach: running and calling themselves primary. */
  liveNodes(): SimNode[];
  running(n: SimNode): boolean;
  apply(n: SimNode, effects: NodeEffect[]): void;
  fail(what: string): never;
}

interface Client {
  id: string;
  reader: boolean;
  node: SimNode | undefined;
  session: number;
  offset: number;
  /** The reader: every output byte received. */
  received: number[];
  seq: number;
  unacked: Array<{ seq: number; data: Uint8Array }>;
  acked: number;
  /** A typist: inputs still to type before it leaves. */
  toType: number;
}

export class SimConsoles {
  private clients: Client[] = [];
  /** Typists that left: what they had acknowledged must stay applied exactly once. */
  private gone: Array<{ id: string; acked: number }> = [];
  private nextSession = 1;
  private nextTypist = 1;
  readonly stats = { typists: 0, consoleDrops: 0, attachRefused: 0, resentApplied: 0, resentReplayed: 0 };

  constructor(
    private readonly world: ConsoleWorld,
    private readonly dropRate: number,
  ) {
    this.clients.push(this.client("client", true));
  }

  private client(id: string, reader: boolean): Client {
    return { id, reader, node: undefined, session: 0, offset: reader ? 0 : -1, received: [], seq: 0, unacked: [], acked: 0, toType: 0 };
  }

  /** A console message from node `n` to session `session`, through the real codec. */
  deliver(n: SimNode, session: number, message: ConsoleServerMessage): void {
    const c = this.clients.find((x) => x.node === n && x.session === session);
    if (!c) return;
    const m = decodeConsoleServerMessage(encodeConsoleMessage(message));
    if (m.type === "output") {
      if (m.offset !== c.offset) this.world.fail(`console output for ${c.id} at offset ${m.offset}, the client expected ${c.offset}`);
      if (c.reader) for (const b of m.data) c.received.push(b);
      c.offset += m.data.length;
    } else if (m.type === "inack") {
      if (m.seq > c.seq) this.world.fail(`${n.nodeId} acknowledged input ${m.seq} of ${c.id}, which sent only ${c.seq}`);
      if (m.seq > c.acked) this.checkApplied(n, c.id, c.acked + 1, m.seq, "acknowledged");
      c.acked = Math.max(c.acked, m.seq);
      c.unacked = c.unacked.filter((u) => u.seq > m.seq);
    }
  }

  closed(n: SimNode, session: number, code: number): void {
    const c = this.clients.find((x) => x.node === n && x.session === session);
    if (!c) return;
    if (code === 4002) this.stats.attachRefused++;
    c.node = undefined;
  }

  /** One tick of every client: (re)connect, drop a connection, type, leave. */
  step(calm: boolean): void {
    if (!calm && this.clients.length < 4 && this.world.r.chance(0.02)) {
      const t = this.client(`typist-${this.nextTypist++}`, false);
      t.toType = this.world.r.int(1, 5);
      this.clients.push(t);
      this.stats.typists++;
    }
    for (const c of [...this.clients]) {
      if (c.node && !(c.node.alive && c.node.core.role === "primary")) c.node = undefined;
      if (!c.node) this.connect(c);
      const n = c.node;
      if (!n || !this.world.running(n)) continue;
      if (!calm && this.world.r.chance(this.dropRate)) {
        // the connection drops: the client reconnects (and resends) next tick
        this.stats.consoleDrops++;
        n.core.consoleClosed(c.session);
        c.node = undefined;
        continue;
      }
      if (c.reader ? !calm && c.unacked.length < 20 && this.world.r.chance(0.02) : !calm && c.toType > 0 && this.world.r.chance(0.3)) {
        if (!c.reader) c.toType--;
        const u = { seq: ++c.seq, data: new TextEncoder().encode(`${c.id}:${c.seq}`) };
        c.unacked.push(u);
        this.send(c, n, u);
      } else if (!c.reader && c.toType === 0 && c.unacked.length === 0) {
        n.core.consoleClosed(c.session);
        this.clients.splice(this.clients.indexOf(c), 1);
        this.gone.push({ id: c.id, acked: c.acked });
      }
    }
  }

  private connect(c: Client): void {
    const live = this.world.liveNodes();
    if (live.length === 0) return;
    const n = live[this.world.r.int(0, live.length - 1)]!;
    if (c.offset < 0) c.offset = n.core.stream.released; // a new typist reads from here on
    if (c.reader) {
      // the new server must agree with what the client already has
      const s = n.core.stream;
      const have = s.read(Math.max(s.retainedFrom, 0), Number.MAX_SAFE_INTEGER)!;
      for (let i = 0; i < have.data.length && have.offset + i < c.offset; i++) {
        if (have.data[i] !== c.received[have.offset + i]) this.world.fail(`console output contradicts at offset ${have.offset + i} after moving to ${n.nodeId}`);
      }
    }
    c.node = n;
    c.session = this.nextSession++;
    this.world.apply(n, n.core.consoleOpened(c.session));
    if (c.node !== n) return;
    // like ConsoleClient: the attach and every unacknowledged input go out together, before any reply
    const resend = [...c.unacked];
    this.world.apply(n, n.core.consoleAttach(c.session, c.id, c.offset));
    if (c.node !== n) return; // refused
    for (const u of resend) this.send(c, n, u);
  }

  private send(c: Client, n: SimNode, u: { seq: number; data: Uint8Array }): void {
    const applied = n.machine!.machine.appliedInputs.findIndex((a) => a.client === c.id && a.seq === u.seq);
    if (applied >= 0) {
      this.stats.resentApplied++;
      // applied while this node was a backup: only the log tells the core so
      if (applied < n.appliedAtTakeover) this.stats.resentReplayed++;
    }
    this.world.apply(n, n.core.consoleInput(c.session, u.seq, u.data));
  }

  /** Inputs `from`..`to` of client `id` were applied exactly once by `n`'s machine. */
  private checkApplied(n: SimNode, id: string, from: number, to: number, what: string): void {
    const count = new Map<number, number>();
    for (const a of n.machine!.machine.appliedInputs) if (a.client === id && a.seq >= from && a.seq <= to) count.set(a.seq, (count.get(a.seq) ?? 0) + 1);
    for (let s = from; s <= to; s++) {
      const k = count.get(s) ?? 0;
      if (k !== 1) this.world.fail(`${what} input ${s} of ${id} was applied ${k} times by ${n.nodeId}'s machine`);
    }
  }

  /** `n` just took over: every acknowledged input is in its machine, once. */
  checkTakeover(n: SimNode): void {
    for (const c of [...this.clients, ...this.gone]) if (c.acked > 0) this.checkApplied(n, c.id, 1, c.acked, "acknowledged (checked at takeover)");
  }

  /** The run ended with `live` the one live primary. */
  checkEnd(live: SimNode): void {
    const reader = this.clients.find((c) => c.reader)!;
    const all = live.core.stream.read(live.core.stream.retainedFrom, Number.MAX_SAFE_INTEGER)!;
    for (let i = Math.max(all.offset, 0); i < reader.offset; i++) if (all.data[i - all.offset] !== reader.received[i]) this.world.fail(`console byte ${i} differs from the live primary's stream`);
    for (const c of [...this.clients, ...this.gone]) if (c.acked > 0) this.checkApplied(live, c.id, 1, c.acked, "acknowledged (checked at the end)");
    for (const c of this.clients) {
      if (c.node === live && c.unacked.length > 0) this.world.fail(`${c.id} is attached to the live primary ${live.nodeId} but input ${c.unacked.map((u) => u.seq).join(",")} was never acknowledged`);
    }
  }
}
