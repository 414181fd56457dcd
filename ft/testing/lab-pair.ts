/**
 * A lockstep pair on hosts that share only a network: NetLab namespaces "a" and "b" run the nodes,
 * "s" runs the storage and the arbiter (nbdkit over TCP and a single-node etcd). Each node has its
 * own directory (never another's). The disk journal (LOCKSTEP_DISK_WRITE_LOG) records every write
 * with its node, epoch and time; a poller reads every node's /status every 50 ms and records who
 * released console output in which epoch, and when (between two polls). From both, `doubleLive()`
 * finds split brain: two nodes acting in one epoch, or a node of an older epoch acting after a
 * node of a newer one had. Used by the partition, shaped-link and standby tests and bench:hosts.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { ConsoleClient, type ConsoleContradiction, type ConsoleGap } from "../runtime/console-client.js";
import { NodeProcess, type NodeRole } from "../runtime/node-process.js";
import { until } from "../runtime/until.js";
import { EtcdServer } from "./etcd-server.js";
import { NetLab } from "./net-lab.js";

export const token = "lab-pair-test-token";
const nbdPort = 10809;

/** One poll's view of a node. */
interface Seen {
  role: string;
  epoch: number;
  releasedBytes: number;
}

export class LabPair {
  readonly lab: NetLab;
  readonly dir = mkdtempSync(join(tmpdir(), "lockstep-lab-pair-"));
  readonly journal = join(this.dir, "disk-writes.jsonl");
  readonly disk = join(this.dir, "disk.img");
  readonly nodes: NodeProcess[] = [];
  etcd!: EtcdServer;
  private nbdkit: ChildProcess | undefined;
  readonly prefix = "pair";
  /** (epoch -> nodes) that released console output while primary in that epoch, from /status. */
  readonly releasers = new Map<number, Set<string>>();
  /** Every release seen: by whom, in which epoch, between which two polls (host ms). */
  readonly releases: Array<{ node: string; epoch: number; fromMs: number; toMs: number }> = [];
  private lastPollMs = new Map<string, number>();
  /** Polls in which two nodes were primary at the same epoch. */
  readonly samePrimaryEpoch: string[] = [];
  private last = new Map<string, Seen>();
  private poller: NodeJS.Timeout | undefined;
  readonly client: ConsoleClient;
  out = "";
  readonly gaps: ConsoleGap[] = [];
  readonly contradictions: ConsoleContradiction[] = [];

  constructor(hosts: string[] = ["a", "b", "s"]) {
    this.lab = NetLab.create(hosts);
    this.client = new ConsoleClient({ urls: [], token, deadAfterMs: 1500 });
    this.client.on("output", (d: Uint8Array) => (this.out += Buffer.from(d).toString("latin1")));
    this.client.on("gap", (g: ConsoleGap) => this.gaps.push(g));
    this.client.on("contradiction", (c: ConsoleContradiction) => this.contradictions.push(c));
  }

  get arbiter(): string {
    return `etcd://${this.etcd.endpoint}/${this.prefix}`;
  }

  async startStorage(): Promise<void> {
    const s = this.lab.host("s");
    this.etcd = await EtcdServer.start({ host: s.ip, netns: s.netns });
    writeFileSync(this.disk, makeBlankDisk({ sizeMiB: 16, format: "ext2" }));
    this.nbdkit = spawn("ip", ["netns", "exec", s.netns, "nbdkit", "--foreground", "--exit-with-parent", "-i", s.ip, "-p", String(nbdPort), "file", `file=${this.disk}`], { stdio: "ignore" });
    await until(async () => {
      const { Socket } = await import("node:net");
      return await new Promise<boolean>((resolve) => {
        const sock = new Socket();
        sock.once("connect", () => (sock.destroy(), resolve(true)));
        sock.once("error", () => resolve(false));
        sock.connect(nbdPort, s.ip);
      });
    }, 10_000, "nbdkit to listen");
  }

  get nbd(): string {
    return `nbd://${this.lab.host("s").ip}:${nbdPort}/`;
  }

  /** A node on `host` with its own directory; `args` after the common ones. */
  async start(name: string, role: NodeRole, host: string, args: string[]): Promise<NodeProcess> {
    const h = this.lab.host(host);
    const own = mkdtempSync(join(this.dir, `${name}-`));
    const node = await NodeProcess.start({
      role,
      name,
      token,
      host: h.ip,
      netns: h.netns,
      sharedDir: own,
      args: ["--arbiter", this.arbiter, "--heartbeat-ms", "50", ...args],
      env: { LOCKSTEP_DISK_WRITE_LOG: this.journal },
    });
    this.nodes.push(node);
    if (role === "standby") void node.waitEvent("listening", 3_600_000).then(() => this.client.addUrl(node.url), () => {});
    else this.client.addUrl(node.url);
    return node;
  }

  startPolling(): void {
    this.client.start();
    this.poller = setInterval(() => void this.poll(), 50);
  }

  private async poll(): Promise<void> {
    const seen = await Promise.all(this.nodes.filter((n) => n.running).map(async (n) => [n.name, await n.status<Seen>(500).catch(() => undefined), Date.now()] as const));
    const primaries = new Map<number, string>();
    for (const [name, s, atMs] of seen) {
      if (!s) continue;
      const before = this.last.get(name);
      const beforeMs = this.lastPollMs.get(name) ?? atMs;
      this.last.set(name, s);
      this.lastPollMs.set(name, atMs);
      if (s.role !== "primary") continue;
      const other = primaries.get(s.epoch);
      if (other !== undefined) this.samePrimaryEpoch.push(`${other} and ${name} both primary at epoch ${s.epoch}`);
      primaries.set(s.epoch, name);
      if (before?.role === "primary" && before.epoch === s.epoch && s.releasedBytes > before.releasedBytes) {
        const set = this.releasers.get(s.epoch) ?? new Set<string>();
        set.add(name);
        this.releasers.set(s.epoch, set);
        this.releases.push({ node: name, epoch: s.epoch, fromMs: beforeMs, toMs: atMs });
      }
    }
  }

  /** Every disk write in the journal: by whom, in which epoch, when (host ms). */
  writes(): Array<{ node: string; epoch: number; atMs: number }> {
    let text = "";
    try {
      text = readFileSync(this.journal, "utf8");
    } catch {
      return [];
    }
    return text
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { node: string; epoch: number; atMs: number });
  }

  /** epoch -> the nodes that wrote the disk in it (from the journal). */
  writers(): Map<number, Set<string>> {
    const map = new Map<number, Set<string>>();
    for (const w of this.writes()) {
      const set = map.get(w.epoch) ?? new Set<string>();
      set.add(w.node);
      map.set(w.epoch, set);
    }
    return map;
  }

  /**
   * Split brain, from what the nodes did: an epoch in which two nodes released output or wrote the
   * disk, two nodes primary at one epoch, or an act (release, write) of an older epoch that surely
   * came after an act of a newer one (a release is known to lie between two polls 50 ms apart).
   */
  doubleLive(): string[] {
    const found: string[] = [...this.samePrimaryEpoch];
    for (const [what, map] of [["released output", this.releasers], ["wrote the disk", this.writers()]] as const) {
      for (const [epoch, set] of map) if (set.size > 1) found.push(`epoch ${epoch}: ${[...set].join(" and ")} ${what}`);
    }
    const acts = [...this.releases.map((r) => ({ ...r, what: "released output" })), ...this.writes().map((w) => ({ node: w.node, epoch: w.epoch, fromMs: w.atMs, toMs: w.atMs, what: "wrote the disk" }))];
    // per epoch, the latest moment its first act had surely happened by
    const firstActBy = new Map<number, { toMs: number; node: string }>();
    for (const a of acts) if ((firstActBy.get(a.epoch)?.toMs ?? Infinity) > a.toMs) firstActBy.set(a.epoch, { toMs: a.toMs, node: a.node });
    for (const a of acts) {
      for (const [epoch, first] of firstActBy) {
        if (epoch > a.epoch && a.fromMs > first.toMs) found.push(`${a.node} ${a.what} in epoch ${a.epoch} at ${a.fromMs}, after ${first.node} of epoch ${epoch} had acted (by ${first.toMs})`);
      }
    }
    return found.slice(0, 20);
  }

  /** Acts (releases surely inside, writes) between these host times: what a waiting pair must not do. */
  actsBetween(fromMs: number, toMs: number): string[] {
    const releases = this.releases.filter((r) => r.fromMs >= fromMs && r.toMs <= toMs).map((r) => `${r.node} released output (epoch ${r.epoch}) between ${r.fromMs} and ${r.toMs}`);
    const writes = this.writes()
      .filter((w) => w.atMs >= fromMs && w.atMs <= toMs)
      .map((w) => `${w.node} wrote the disk (epoch ${w.epoch}) at ${w.atMs}`);
    return [...releases, ...writes];
  }

  private tail(): string {
    return `; tail ${JSON.stringify(this.out.slice(-300))}`;
  }

  /** Waits for the guest's shell prompt, then starts the writer: numbered records to the disk, `sync` after each, "durableN" on the console. */
  async startWriter(timeoutMs = 120_000): Promise<void> {
    await until(() => /lockstep:\/root# /.test(this.out), timeoutMs, () => `the prompt${this.tail()}`);
    this.client.send(Buffer.from("(i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo rec$i >> /mnt/records; sync; echo durable$i; usleep 50000; done; echo writer''-stopped) &\r"));
  }

  /** Waits until the guest has reported `n` more durable records. */
  async recordsAfter(n: number, why: string): Promise<void> {
    const target = (this.durable().at(-1) ?? 0) + n;
    await until(() => (this.durable().at(-1) ?? 0) >= target, 60_000, () => `${why}: record ${target}${this.tail()}`);
  }

  /**
   * Stops the writer, unmounts the disk in the guest, kills every node and reads the disk: what
   * e2fsck says of it and the records on it.
   */
  async finishDisk(): Promise<{ fsck: { status: number | null; output: string }; records: string[] }> {
    this.client.send(Buffer.from("touch /tmp/stop\r"));
    await until(() => /writer-stopped/.test(this.out), 30_000, () => `the writer to stop${this.tail()}`);
    this.client.send(Buffer.from("umount /mnt; echo umount-status-$?\r"));
    await until(() => /umount-status-0/.test(this.out), 30_000, () => `umount${this.tail()}`);
    for (const n of this.nodes) n.kill("SIGKILL");
    const fsck = spawnSync("e2fsck", ["-fn", this.disk], { encoding: "utf8" });
    const records = spawnSync("debugfs", ["-R", "cat /records", this.disk], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    return { fsck: { status: fsck.status, output: fsck.stdout + fsck.stderr }, records };
  }

  durable(): number[] {
    return [...this.out.matchAll(/durable(\d+)\r\n/g)].map((m) => Number(m[1]));
  }

  async stop(): Promise<void> {
    clearInterval(this.poller);
    this.client.close();
    for (const n of this.nodes) n.kill("SIGKILL");
    await Promise.all(this.nodes.map((n) => n.waitExit(10_000).catch(() => undefined)));
    this.nbdkit?.kill("SIGKILL");
    await this.etcd?.stop();
    this.lab.destroy();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
