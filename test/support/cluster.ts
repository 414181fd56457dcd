/**
 * Real lockstep nodes as separate OS processes on loopback for integration tests: spawn, wait for
 * their events, kill them, read their status, and a TCP proxy that can cut the channel between them.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, connect, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { cliPath } from "./cli.js";

export const token = "integration-test-token";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      s.close(() => resolve(typeof a === "object" && a ? a.port : 0));
    });
  });
}

export class TestNode {
  readonly events: Array<Record<string, unknown>> = [];
  stderr = "";
  exitCode: number | null | undefined;
  private waiters: Array<() => void> = [];

  constructor(
    readonly name: string,
    readonly port: number,
    readonly child: ChildProcess,
  ) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        this.events.push(JSON.parse(line));
      } catch {
        return;
      }
      this.notify();
    });
    child.stderr!.on("data", (d: Buffer) => (this.stderr += d.toString()));
    child.on("exit", (code) => {
      this.exitCode = code;
      this.notify();
    });
  }

  private notify(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  async waitEvent(event: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const e = this.events.find((x) => x.event === event);
      if (e) return e;
      if (this.exitCode !== undefined && event !== "exit") throw new Error(`${this.name} exited (${this.exitCode}) before ${event}:\n${this.stderr.slice(-2000)}`);
      if (Date.now() > deadline) throw new Error(`${this.name}: no ${event} within ${timeoutMs} ms:\n${this.stderr.slice(-2000)}`);
      await new Promise<void>((r) => {
        this.waiters.push(r);
        setTimeout(r, 200);
      });
    }
  }

  async waitExit(timeoutMs = 30_000): Promise<number | null> {
    const deadline = Date.now() + timeoutMs;
    while (this.exitCode === undefined) {
      if (Date.now() > deadline) throw new Error(`${this.name} did not exit within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return this.exitCode;
  }

  async status(): Promise<Record<string, unknown>> {
    const res = await fetch(`http://127.0.0.1:${this.port}/status`, { signal: AbortSignal.timeout(2000) });
    return (await res.json()) as Record<string, unknown>;
  }

  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    this.child.kill(signal);
  }
}

export class TestCluster {
  readonly dir = mkdtempSync(join(tmpdir(), "lockstep-cluster-test-"));
  readonly nodes: TestNode[] = [];

  async start(name: string, role: "primary" | "backup", args: string[]): Promise<TestNode> {
    const port = await freePort();
    const child = spawn(
      process.execPath,
      [cliPath, role, "--listen", `127.0.0.1:${port}`, "--shared-dir", this.dir, "--token", token, "--node-id", name, ...args],
      { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LOCKSTEP_LOG_LEVEL: "info" } },
    );
    const node = new TestNode(name, port, child);
    this.nodes.push(node);
    await node.waitEvent("listening");
    return node;
  }

  async stop(): Promise<void> {
    for (const n of this.nodes) if (n.exitCode === undefined) n.kill("SIGKILL");
    await new Promise((r) => setTimeout(r, 100));
    rmSync(this.dir, { recursive: true, force: true });
  }
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
