// ConsoleClient against scripted console servers (no guest): after a takeover it asks the new node
// for output it already has, checks that the resent bytes are the same, passes on only new bytes,
// reports a contradiction where they differ, and attaches later on a node that holds less; output no
// live node holds is reported as a gap and skipped, and input a node dropped is sent again.
import { afterEach, describe, expect, it } from "vitest";
import { WebSocketServer, type WebSocket } from "ws";
import { ConsoleClient, type ConsoleContradiction, type ConsoleGap } from "../../ft/runtime/console-client.js";
import { until } from "../../ft/runtime/until.js";
import { decodeConsoleClientMessage, encodeConsoleMessage } from "../../ft/wire/console-messages.js";

/** A console endpoint serving `stream[retainedFrom..)` to whoever attaches. */
class ScriptedNode {
  readonly attaches: number[] = [];
  private readonly wss = new WebSocketServer({ host: "127.0.0.1", port: 0, autoPong: false });
  /** Stopped (like SIGSTOP): answers nothing, and its connections stay open. */
  frozen = false;
  private readonly sockets = new Set<WebSocket>();
  private readonly ready = new Promise((resolve) => this.wss.once("listening", resolve));

  /** Input seqs received, in order; `dropInputs` of them are dropped (not acknowledged) first. */
  readonly inputs: number[] = [];
  dropInputs = 0;

  constructor(
    private readonly stream: Uint8Array,
    private readonly retainedFrom = 0,
  ) {
    this.wss.on("connection", (ws) => {
      this.sockets.add(ws);
      ws.on("ping", (data: Buffer) => {
        if (!this.frozen) ws.pong(data);
      });
      ws.send(encodeConsoleMessage({ type: "status", role: "primary", epoch: 1, live: true }));
      ws.on("message", (data: Buffer) => {
        if (this.frozen) return;
        const m = decodeConsoleClientMessage(new Uint8Array(data));
        if (m.type === "input") {
          this.inputs.push(m.seq);
          if (this.dropInputs > 0) this.dropInputs--;
          else ws.send(encodeConsoleMessage({ type: "inack", seq: m.seq }));
          return;
        }
        if (m.type !== "attach") return;
        this.attaches.push(m.offset);
        if (m.offset < this.retainedFrom || m.offset > stream.length) {
          ws.close(4002, `offset ${m.offset} not available (have ${this.retainedFrom}..${stream.length})`);
          return;
        }
        ws.send(encodeConsoleMessage({ type: "output", offset: m.offset, data: stream.subarray(m.offset) }));
      });
    });
  }

  url = "";

  /** Resolves once it listens. */
  async listening(): Promise<this> {
    await this.ready;
    this.url = `ws://127.0.0.1:${(this.wss.address() as { port: number }).port}`;
    return this;
  }

  /** The node dies: its connections drop and it accepts no more. */
  die(): void {
    for (const ws of this.sockets) ws.terminate();
    this.wss.close();
  }
}

const pattern = (n: number) => Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
const clients: ConsoleClient[] = [];
const nodes: ScriptedNode[] = [];
afterEach(() => {
  for (const c of clients.splice(0)) c.close();
  for (const n of nodes.splice(0)) n.die();
});

/** A client that received the first `before` bytes of `first`'s stream from it, then saw it die. */
async function afterTakeover(full: Uint8Array, before: number, secondNode: ScriptedNode) {
  const first = await new ScriptedNode(full.subarray(0, before)).listening();
  const second = await secondNode.listening();
  nodes.push(first, second);
  const client = new ConsoleClient({ urls: [first.url, second.url], token: "t", retryMs: 5 });
  clients.push(client);
  const received: Uint8Array[] = [];
  const contradictions: ConsoleContradiction[] = [];
  client.on("output", (d: Uint8Array) => received.push(Uint8Array.from(d)));
  client.on("contradiction", (c: ConsoleContradiction) => contradictions.push(c));
  client.start();
  await until(() => client.offset === before, 5000, "the first node's output");
  first.die();
  return { client, received: () => Buffer.concat(received), contradictions };
}

describe("ConsoleClient overlap check", () => {
  it("re-attaches 4096 bytes early, checks them, and passes on only the new bytes", async () => {
    const full = pattern(10_000);
    const { client, received, contradictions } = await afterTakeover(full, 6000, new ScriptedNode(full));
    await until(() => client.offset === 10_000, 5000, "the second node's output");
    expect(nodes[1]!.attaches).toEqual([6000 - 4096]);
    expect(client.overlapCheckedBytes).toBe(4096);
    expect(contradictions).toEqual([]);
    expect(received()).toEqual(Buffer.from(full));
  });

  it("reports resent bytes that differ, at the offset of the first difference", async () => {
    const full = pattern(10_000);
    const diverged = Uint8Array.from(full);
    diverged[5990] = diverged[5990]! ^ 0xff;
    diverged[5995] = diverged[5995]! ^ 0xff;
    const { client, received, contradictions } = await afterTakeover(full, 6000, new ScriptedNode(diverged));
    await until(() => client.offset === 10_000, 5000, "the second node's output");
    expect(contradictions).toHaveLength(1);
    expect(contradictions[0]).toMatchObject({ offset: 5990, url: nodes[1]!.url });
    expect(contradictions[0]!.had[0]).toBe(full[5990]);
    expect(contradictions[0]!.resent[0]).toBe(diverged[5990]);
    // what was passed on is not repeated: the first node's bytes, then the second's after 6000
    expect(received()).toEqual(Buffer.concat([full.subarray(0, 6000), diverged.subarray(6000)]));
  });

  it("attaches as early as a node that holds less can serve", async () => {
    const full = pattern(10_000);
    const { client, contradictions } = await afterTakeover(full, 6000, new ScriptedNode(full, 5000));
    await until(() => client.offset === 10_000, 5000, "the second node's output");
    expect(nodes[1]!.attaches).toEqual([6000 - 4096, 5000]);
    expect(client.overlapCheckedBytes).toBe(1000);
    expect(contradictions).toEqual([]);
  });
});

describe("ConsoleClient liveness", () => {
  it("skips, and reports as a gap, output that the live node no longer holds", async () => {
    const full = pattern(10_000);
    const gaps: ConsoleGap[] = [];
    const { client, received } = await afterTakeover(full, 6000, new ScriptedNode(full, 8000));
    client.on("gap", (g: ConsoleGap) => gaps.push(g));
    await until(() => client.offset === 10_000, 5000, "the second node's output after the gap");
    expect(gaps).toEqual([{ from: 6000, to: 8000, url: nodes[1]!.url }]);
    expect(received()).toEqual(Buffer.concat([full.subarray(0, 6000), full.subarray(8000)]));
  });

  it("sends input again that the node dropped, without a reconnect", async () => {
    const node = await new ScriptedNode(pattern(10)).listening();
    nodes.push(node);
    node.dropInputs = 1;
    const client = new ConsoleClient({ urls: [node.url], token: "t", retryMs: 5, resendMs: 50 });
    clients.push(client);
    let attaches = 0;
    client.on("attached", () => attaches++);
    client.start();
    await until(() => client.connectedTo !== undefined, 5000, "attached");
    client.send(Buffer.from("a"));
    await until(() => node.inputs.length >= 2, 5000, () => `the dropped input sent again; node got ${JSON.stringify(node.inputs)}`);
    expect(node.inputs.slice(0, 2)).toEqual([1, 1]);
    expect(client.resentBytes).toBeGreaterThanOrEqual(1);
    expect(attaches).toBe(1);
    // acknowledged now: nothing more is sent
    const sent = node.inputs.length;
    await new Promise((r) => setTimeout(r, 200));
    expect(node.inputs.length).toBe(sent);
  });

  it("leaves a node that stopped answering (its connection still open) for one that is live", async () => {
    const full = pattern(3000);
    const first = await new ScriptedNode(full.subarray(0, 1000)).listening();
    const second = await new ScriptedNode(full).listening();
    nodes.push(first, second);
    const client = new ConsoleClient({ urls: [first.url, second.url], token: "t", retryMs: 5, deadAfterMs: 300 });
    clients.push(client);
    const warnings: string[] = [];
    client.on("warning", (w: string) => warnings.push(w));
    client.start();
    await until(() => client.offset === 1000, 5000, "the first node's output");
    first.frozen = true;
    await until(() => client.offset === 3000, 5000, () => `the second node's output; warnings ${JSON.stringify(warnings)}`);
    expect(client.connectedTo).toBe(second.url);
    expect(warnings.some((w) => w.includes("answered nothing for 300 ms"))).toBe(true);
  });
});

