/**
 * Watches the pair's nodes from the browser: polls each node's /status twice a second (with the
 * console credential, so a node of another origin lets the page read it), finds the pair's other
 * nodes through `peerUrl`, and keeps, per node, the newest status and whether it answers. A node
 * that has not answered for `unreachableAfterMs` is shown as unreachable (a killed or stopped node,
 * or one cut off), never as an error.
 */

/** The parts of a node's /status the page shows. */
export interface NodeStatus {
  nodeId: string;
  url: string;
  role: "primary" | "backup" | "halted";
  epoch: number;
  state: string;
  protected: boolean;
  backup: string | null;
  peerUrl: string | null;
  slice: number;
  lagSlices: number | null;
  logEntries: number;
  outputBytes: number;
  releasedBytes: number;
  haltReason: string | null;
  outputDelayMs: { n: number; p50: number | null; p99: number | null; max: number | null };
  backupLagMs: { n: number; p50: number | null; p99: number | null; max: number | null };
  guestMs: number;
  peerBytesSent: number;
  peerBytesReceived: number;
  consoleClients: number;
  disk: { reads: number; writes: number; bytesRead: number; bytesWritten: number; heldWrites: number } | null;
  net: { framesOut: number; framesIn: number; framesInDropped: number; held: number; guestIp: string | null } | null;
  memory: { rss: number; heapUsed: number };
  timeline: Array<{ seq: number; atMs: number; kind: string; text: string }>;
}

export interface WatchedNode {
  url: string;
  /** A name given by the demo (A, B, ...), else the node id once known. */
  name: string;
  named: boolean;
  status: NodeStatus | undefined;
  reachable: boolean;
  /** When (performance.now) the node last answered. */
  answeredAt: number | undefined;
  /** Where a status came from before this one: for rates. */
  previous: { at: number; status: NodeStatus } | undefined;
  /** Still running, as the demo says (the demo knows what it killed). */
  running?: boolean;
}

export interface DemoNodeList {
  nodes: Array<{ name: string; url: string; running: boolean }>;
  events: Array<{ seq: number; atMs: number; kind: string; text: string }>;
}

export class NodeWatch {
  readonly nodes = new Map<string, WatchedNode>();
  /** Second addresses of nodes already watched under another. */
  private readonly aliases = new Set<string>();
  demoEvents: DemoNodeList["events"] = [];
  private timer: ReturnType<typeof setInterval> | undefined;
  private listeners: Array<() => void> = [];

  constructor(
    private readonly token: string,
    initial: string[],
    private readonly options: { demo: boolean; intervalMs?: number; unreachableAfterMs?: number },
  ) {
    for (const u of initial) this.add(u);
  }

  onUpdate(f: () => void): void {
    this.listeners.push(f);
  }

  start(): void {
    void this.poll();
    this.timer = setInterval(() => void this.poll(), this.options.intervalMs ?? 500);
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /** The nodes to attach a console to, best first: the live primary, then the others that answer. */
  consoleCandidates(): string[] {
    const all = [...this.nodes.values()].filter((n) => n.running !== false);
    const rank = (n: WatchedNode) => (!n.reachable ? 3 : n.status?.role === "primary" ? 0 : n.status?.role === "backup" ? 1 : 2);
    // the newest epoch first among equals: a primary woken from a pause is older than the one that took over
    return all.sort((a, b) => rank(a) - rank(b) || (b.status?.epoch ?? 0) - (a.status?.epoch ?? 0)).map((n) => n.url);
  }

  private add(url: string, name?: string): WatchedNode | undefined {
    const key = url.replace(/\/$/, "");
    if (this.aliases.has(key) && name === undefined) return undefined;
    let n = this.nodes.get(key);
    if (!n) {
      n = { url: key, name: name ?? key.replace(/^https?:\/\//, ""), named: name !== undefined, status: undefined, reachable: false, answeredAt: undefined, previous: undefined };
      this.nodes.set(key, n);
    } else if (name) {
      n.name = name;
      n.named = true;
    }
    return n;
  }

  private async poll(): Promise<void> {
    if (this.options.demo) {
      const list = await this.fetchJson<DemoNodeList>("/demo/nodes");
      if (list) {
        for (const d of list.nodes) this.add(d.url, d.name)!.running = d.running;
        this.demoEvents = list.events;
      }
    }
    await Promise.all([...this.nodes.values()].map((n) => this.pollNode(n)));
    for (const f of this.listeners) f();
  }

  private async pollNode(n: WatchedNode): Promise<void> {
    const now = performance.now();
    const s = n.running === false ? undefined : await this.fetchJson<NodeStatus>(`${n.url}/status`);
    if (s) {
      // the same node under a second address (its own name for itself, and the one the page used): keep one
      const twin = [...this.nodes.values()].find((o) => o !== n && o.status?.nodeId === s.nodeId && o.reachable);
      if (twin && !n.named) {
        this.nodes.delete(n.url);
        this.aliases.add(n.url);
        return;
      }
      if (n.status) n.previous = { at: n.answeredAt!, status: n.status };
      n.status = s;
      n.answeredAt = now;
      n.reachable = true;
      if (!n.named) n.name = s.nodeId;
      if (s.peerUrl && !this.options.demo) this.add(s.peerUrl);
    } else if (n.running === false || n.answeredAt === undefined || now - n.answeredAt > (this.options.unreachableAfterMs ?? 2000)) {
      n.reachable = false;
    }
  }

  private async fetchJson<T>(url: string): Promise<T | undefined> {
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), 1500);
    try {
      const r = await fetch(url, { headers: { authorization: `Bearer ${this.token}` }, signal: abort.signal, cache: "no-store" });
      return r.ok ? ((await r.json()) as T) : undefined;
    } catch {
      return undefined;
    } finally {
      clearTimeout(timer);
    }
  }
}
