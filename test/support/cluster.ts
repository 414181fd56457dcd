/**
 * Real lockstep nodes as separate OS processes on loopback for integration tests: a cluster that owns
 * the shared arbiter directory and the nodes started in it (each a NodeProcess), and a TCP proxy
 * that can cut the channel between two nodes.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeProcess, type NodeRole } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";

export const token = "integration-test-token";

export class TestCluster {
  readonly dir = mkdtempSync(join(tmpdir(), "lockstep-cluster-test-"));
  readonly nodes: NodeProcess[] = [];

  async start(name: string, role: NodeRole, args: string[]): Promise<NodeProcess> {
    const node = await NodeProcess.start({ role, name, sharedDir: this.dir, token, args });
    this.nodes.push(node);
    return node;
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) n.kill("SIGKILL");
    await Promise.all(this.nodes.map((n) => n.waitExit(10_000).catch(() => undefined)));
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Waits until `primary` says it is protected by `backup`; on a timeout the error carries both
 * nodes' logs and the primary's last /status (what it thought of its backup: lag, state).
 */
export async function untilProtected(primary: NodeProcess, backup: NodeProcess, timeoutMs: number): Promise<void> {
  let last: unknown;
  await until(
    async () => (last = await primary.status()).protected === true && (last as { backup?: string }).backup === backup.name,
    timeoutMs,
    () => `${backup.name} to protect ${primary.name}; ${primary.name}'s last status: ${JSON.stringify(last)}\n${backup.name}: ${backup.stderr.slice(-2000)}\n${primary.name}: ${primary.stderr.slice(-2500)}`,
  );
}

/** A TCP proxy between a backup and its primary; `cut()` severs it and refuses new connections. */
export class CuttableProxy {
  private server: Server;
  private sockets = new Set<Socket>();
  private open = true;
  port = 0;

  constructor(private readonly target: number) {
    this.server = createServer((client) => {
      if (!this.open) return client.destroy();
      const upstream = connect(this.target, "127.0.0.1");
      for (const s of [client, upstream]) {
        this.sockets.add(s);
        s.on("close", () => this.sockets.delete(s));
        s.on("error", () => {});
      }
      client.pipe(upstream).pipe(client);
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve) => this.server.listen(0, "127.0.0.1", () => resolve((this.port = (this.server.address() as { port: number }).port))));
  }

  cut(): void {
    this.open = false;
    for (const s of this.sockets) s.destroy();
  }

  close(): void {
    this.cut();
    this.server.close();
  }
}
