/**
 * EtcdServer: a single-node etcd (Debian `etcd-server`) for tests and benchmarks, on loopback or on
 * an address inside a network namespace, with its data in a temp directory; ready in well under a
 * second (`--heartbeat-interval 10 --election-timeout 50`). Stopped by its process id.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../runtime/free-port.js";
import { until } from "../runtime/until.js";

export interface EtcdServerOptions {
  /** Address to listen on (default 127.0.0.1). */
  host?: string;
  clientPort?: number;
  peerPort?: number;
  /** Run it inside this network namespace (`ip netns exec`). */
  netns?: string;
}

export class EtcdServer {
  private constructor(
    readonly child: ChildProcess,
    readonly endpoint: string,
    private readonly dataDir: string,
    private output: { text: string },
  ) {}

  static async start(options: EtcdServerOptions = {}): Promise<EtcdServer> {
    const host = options.host ?? "127.0.0.1";
    const clientPort = options.clientPort ?? (await freePort());
    const peerPort = options.peerPort ?? (await freePort());
    const dataDir = mkdtempSync(join(tmpdir(), "lockstep-etcd-"));
    const client = `http://${host}:${clientPort}`;
    const peer = `http://${host}:${peerPort}`;
    const args = ["--name", "arbiter", "--data-dir", join(dataDir, "data"), "--listen-client-urls", client, "--advertise-client-urls", client, "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", `arbiter=${peer}`, "--heartbeat-interval", "10", "--election-timeout", "50", "--log-level", "warn"];
    const [cmd, argv] = options.netns ? ["ip", ["netns", "exec", options.netns, "etcd", ...args]] : ["etcd", args];
    const child = spawn(cmd, argv as string[], { stdio: ["ignore", "ignore", "pipe"] });
    const output = { text: "" };
    child.stderr!.on("data", (d: Buffer) => (output.text = (output.text + d.toString()).slice(-4000)));
    const server = new EtcdServer(child, `${host}:${clientPort}`, dataDir, output);
    const spawnError = new Promise<never>((_, reject) => child.once("error", reject));
    spawnError.catch(() => {});
    try {
      await Promise.race([
        spawnError,
        until(async () => {
          if (child.exitCode !== null) throw new Error(`etcd exited: ${output.text}`);
          return (await fetchHealth(client)) === true;
        }, 20_000, () => `etcd on ${client} to answer: ${output.text}`),
      ]);
    } catch (e) {
      await server.stop();
      throw e;
    }
    return server;
  }

  /** Freezes etcd (SIGSTOP): it neither answers nor closes connections, like a host cut off. */
  pause(): void {
    this.child.kill("SIGSTOP");
  }

  resume(): void {
    this.child.kill("SIGCONT");
  }

  /** Stops etcd (SIGKILL: tests cut it off as a host would die) and removes its data. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGKILL");
      this.child.kill("SIGCONT");
      await exited;
    }
    rmSync(this.dataDir, { recursive: true, force: true });
  }
}

async function fetchHealth(base: string): Promise<boolean> {
  try {
    const r = await fetch(`${base}/health`, { signal: AbortSignal.timeout(500) });
    return r.ok && ((await r.json()) as { health?: unknown }).health === "true";
  } catch {
    return false;
  }
}
