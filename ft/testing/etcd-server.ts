/**
 * EtcdServer: a single-node etcd (Debian `etcd-server`) for tests and benchmarks, on loopback or on
 * an address inside a network namespace, with its data in a temp directory; ready in well under a
 * second (`--heartbeat-interval 10 --election-timeout 50`). Stopped by its process id.
 *
 * EtcdCluster: a cluster of several members on loopback (three for a quorum that survives one
 * member's death), each with its data in a directory of the cluster's temp directory. A member can
 * be stopped (killed, its data kept) and started again; the cluster stops them all and removes the
 * directory.
 */
import { randomUUID } from "node:crypto";
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

/** One member of an EtcdCluster: killed and restarted by its process id, its data kept meanwhile. */
export class EtcdMember {
  private child: ChildProcess | undefined;
  private readonly output = { text: "" };

  constructor(
    readonly name: string,
    /** host:port of its client URL (what an arbiter spec names). */
    readonly endpoint: string,
    private readonly args: string[],
  ) {}

  /** Spawns the member (again); `ready` waits until it answers healthy (it needs a quorum for that). */
  async start(ready = true): Promise<void> {
    if (this.running) throw new Error(`etcd member ${this.name} is running already`);
    const child = spawn("etcd", this.args, { stdio: ["ignore", "ignore", "pipe"] });
    this.child = child;
    child.stderr!.on("data", (d: Buffer) => (this.output.text = (this.output.text + d.toString()).slice(-4000)));
    const spawned = new Promise<void>((resolve, reject) => {
      child.once("spawn", resolve);
      child.once("error", reject);
    });
    await spawned;
    if (ready) await this.ready();
  }

  /** Waits until the member answers healthy (it has a leader and serves reads). */
  async ready(timeoutMs = 20_000): Promise<void> {
    await until(async () => {
      if (!this.running) throw new Error(`etcd member ${this.name} exited: ${this.output.text}`);
      return (await fetchHealth(`http://${this.endpoint}`)) === true;
    }, timeoutMs, () => `etcd member ${this.name} on ${this.endpoint} to answer: ${this.output.text}`);
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The member's own id (hex) and the id of the leader it follows (0 if none); undefined if it does not answer. */
  async status(): Promise<{ memberId: string; leaderId: string } | undefined> {
    try {
      const r = await fetch(`http://${this.endpoint}/v3/maintenance/status`, { method: "POST", body: "{}", signal: AbortSignal.timeout(500) });
      if (!r.ok) return undefined;
      const s = (await r.json()) as { header?: { member_id?: string }; leader?: string };
      return s.header?.member_id === undefined ? undefined : { memberId: s.header.member_id, leaderId: s.leader ?? "0" };
    } catch {
      return undefined;
    }
  }

  /** Freezes the member (SIGSTOP): it neither answers nor closes connections. */
  pause(): void {
    this.child?.kill("SIGSTOP");
  }

  resume(): void {
    this.child?.kill("SIGCONT");
  }

  /** Kills the member (SIGKILL, as a host dies); its data stays until the cluster stops, so it can start again. */
  async stop(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGKILL");
    child.kill("SIGCONT");
    await exited;
  }
}

export class EtcdCluster {
  private constructor(
    readonly members: EtcdMember[],
    private readonly dir: string,
  ) {}

  /** host:port of every member, in member order. */
  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }

  /** Starts `size` members on loopback as one new cluster; resolves once every member answers healthy. */
  static async start(size = 3): Promise<EtcdCluster> {
    const host = "127.0.0.1";
    const dir = mkdtempSync(join(tmpdir(), "lockstep-etcd-cluster-"));
    const ports: Array<{ name: string; client: string; peer: string }> = [];
    const taken = new Set<number>();
    const port = async () => {
      for (;;) {
        const p = await freePort();
        if (taken.has(p)) continue;
        taken.add(p);
        return p;
      }
    };
    for (let i = 0; i < size; i++) ports.push({ name: `m${i}`, client: `http://${host}:${await port()}`, peer: `http://${host}:${await port()}` });
    const initialCluster = ports.map((p) => `${p.name}=${p.peer}`).join(",");
    const token = `lockstep-${randomUUID()}`;
    const members = ports.map(
      (p) =>
        new EtcdMember(p.name, p.client.slice("http://".length), [
          "--name", p.name, "--data-dir", join(dir, p.name),
          "--listen-client-urls", p.client, "--advertise-client-urls", p.client,
          "--listen-peer-urls", p.peer, "--initial-advertise-peer-urls", p.peer,
          "--initial-cluster", initialCluster, "--initial-cluster-state", "new", "--initial-cluster-token", token,
          "--heartbeat-interval", "10", "--election-timeout", "50", "--log-level", "warn",
        ]),
    );
    const cluster = new EtcdCluster(members, dir);
    try {
      // all first (none is healthy before a quorum is up), then wait for each
      for (const m of members) await m.start(false);
      for (const m of members) await m.ready();
    } catch (e) {
      await cluster.stop();
      throw e;
    }
    return cluster;
  }

  /** Index of the member that the running members name as their leader, or undefined while none is agreed on. */
  async leader(): Promise<number | undefined> {
    const statuses = await Promise.all(this.members.map((m) => (m.running ? m.status() : Promise.resolve(undefined))));
    const leaderIds = new Set(statuses.filter((s) => s !== undefined).map((s) => s!.leaderId));
    if (leaderIds.size !== 1) return undefined;
    const [leaderId] = leaderIds;
    const index = statuses.findIndex((s) => s?.memberId === leaderId);
    return index < 0 ? undefined : index;
  }

  /** Kills every member by its process id and removes the data. */
  async stop(): Promise<void> {
    await Promise.all(this.members.map((m) => m.stop()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
