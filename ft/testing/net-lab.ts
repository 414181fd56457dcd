/**
 * NetLab: hosts as network namespaces on one machine, for tests of a pair across a real network
 * path. Each host is a namespace with one interface (eth0, a veth) on a bridge in the test's own
 * namespace, which also has two addresses on the bridge: the test reaches every host from one
 * (never subject to loss), and a DelayRelay placed on the other sits on the path between two hosts
 * (its traffic is lost like any host's). Nothing leaves the machine.
 *
 * Faults are rules inside the hosts, so they never touch the test's own view of the hosts:
 *   cut(a, b)             drops all traffic between a and b (`oneWay`: only what a sends to b)
 *   isolate(a)            a reaches nobody (but the test)
 *   loss(a, percent)      a drops this share of what it sends and receives (nftables `numgen random`)
 *   rate(a, mbit)         a's outgoing bandwidth (`tbf`)
 * Each host's rules are one nftables table, rewritten whole at every change (atomic).
 *
 * Needs root (or CAP_NET_ADMIN) and iproute2, nftables; `destroy()` removes everything it made (and
 * kills what still runs in the namespaces), as does the exit of the process that made the lab.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";

export interface LabHost {
  name: string;
  netns: string;
  ip: string;
}

interface Faults {
  cutTo: Set<string>;
  cutFrom: Set<string>;
  lossPercent: number;
}

const run = (cmd: string, args: string[], input?: string) => {
  try {
    execFileSync(cmd, args, { stdio: ["pipe", "ignore", "pipe"], ...(input !== undefined ? { input } : {}) });
  } catch (e) {
    const err = e as { stderr?: Buffer };
    throw new Error(`${cmd} ${args.join(" ")}: ${err.stderr?.toString().trim() ?? String(e)}`);
  }
};

/** Labs not yet destroyed: removed when the process exits, however a test or script ends. */
const liveLabs = new Set<NetLab>();

export class NetLab {
  readonly hosts = new Map<string, LabHost>();
  /** The test's own address on the bridge (its traffic is never dropped for loss: status polls). */
  readonly testIp: string;
  /** A second address of the test's namespace, for relays on the path between hosts (lossy like any host's). */
  readonly relayIp: string;
  private readonly faults = new Map<string, Faults>();

  private constructor(
    private readonly id: string,
    private readonly subnet: string,
  ) {
    this.testIp = `${subnet}.254`;
    this.relayIp = `${subnet}.253`;
  }

  /** Whether this machine lets the test make namespaces (root with iproute2 and nftables). */
  static available(): boolean {
    return process.getuid?.() === 0 && spawnSync("nft", ["--version"]).status === 0 && spawnSync("ip", ["-V"]).status === 0;
  }

  static create(names: string[]): NetLab {
    const id = randomBytes(3).toString("hex");
    const lab = new NetLab(id, `10.${200 + (parseInt(id.slice(0, 2), 16) % 50)}.${parseInt(id.slice(2, 4), 16) % 250}`);
    if (liveLabs.size === 0) process.once("exit", () => liveLabs.forEach((l) => l.destroy()));
    liveLabs.add(lab);
    try {
      lab.build(names);
    } catch (e) {
      lab.destroy();
      throw e;
    }
    return lab;
  }

  private get bridge(): string {
    return `lsb${this.id}`;
  }

  private build(names: string[]): void {
    run("ip", ["link", "add", this.bridge, "type", "bridge"]);
    run("ip", ["addr", "add", `${this.testIp}/24`, "dev", this.bridge]);
    run("ip", ["addr", "add", `${this.relayIp}/24`, "dev", this.bridge]);
    run("ip", ["link", "set", this.bridge, "up"]);
    names.forEach((name, i) => {
      const host: LabHost = { name, netns: `ls${this.id}-${name}`, ip: `${this.subnet}.${i + 1}` };
      const outer = `lsv${this.id}${i}`;
      run("ip", ["netns", "add", host.netns]);
      this.hosts.set(name, host);
      run("ip", ["link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", host.netns]);
      run("ip", ["link", "set", outer, "master", this.bridge, "up"]);
      this.exec(name, ["ip", "link", "set", "lo", "up"]);
      this.exec(name, ["ip", "addr", "add", `${host.ip}/24`, "dev", "eth0"]);
      this.exec(name, ["ip", "link", "set", "eth0", "up"]);
      this.faults.set(name, { cutTo: new Set(), cutFrom: new Set(), lossPercent: 0 });
      this.apply(name);
    });
  }

  host(name: string): LabHost {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in this lab`);
    return h;
  }

  exec(name: string, args: string[], input?: string): void {
    run("ip", ["netns", "exec", this.host(name).netns, ...args], input);
  }

  /** Drops traffic between a and b (both ways), or only what a sends to b. */
  cut(a: string, b: string, options: { oneWay?: boolean } = {}): void {
    this.faults.get(a)!.cutTo.add(this.host(b).ip);
    this.faults.get(b)!.cutFrom.add(this.host(a).ip);
    if (!options.oneWay) {
      this.faults.get(b)!.cutTo.add(this.host(a).ip);
      this.faults.get(a)!.cutFrom.add(this.host(b).ip);
    }
    this.apply(a);
    this.apply(b);
  }

  /** a reaches no other host (the test still reaches it). */
  isolate(a: string): void {
    for (const other of this.hosts.keys()) if (other !== a) this.cut(a, other);
  }

  /** Every host drops this share (0–100) of what it sends and receives. */
  loss(name: string, percent: number): void {
    this.faults.get(name)!.lossPercent = percent;
    this.apply(name);
  }

  /** Limits what `name` sends to `mbit` megabits per second (token bucket); undefined lifts it. */
  rate(name: string, mbit: number | undefined): void {
    spawnSync("ip", ["netns", "exec", this.host(name).netns, "tc", "qdisc", "del", "dev", "eth0", "root"]);
    if (mbit !== undefined) this.exec(name, ["tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", `${mbit}mbit`, "burst", "64kb", "latency", "100ms"]);
  }

  /** Packets `name` has dropped for loss under its present loss setting (both ways): to and from a relay, or all others. */
  lossDrops(name: string, which: "relay" | "direct"): number {
    const r = spawnSync("ip", ["netns", "exec", this.host(name).netns, "nft", "list", "table", "inet", "lab"], { encoding: "utf8" });
    const comment = which === "relay" ? "loss-relay" : "loss";
    return [...r.stdout.matchAll(new RegExp(`counter packets (\\d+) bytes \\d+ drop comment "${comment}"`, "g"))].reduce((n, m) => n + Number(m[1]), 0);
  }

  /** Lifts every cut and every loss. */
  heal(): void {
    for (const [name, f] of this.faults) {
      f.cutTo.clear();
      f.cutFrom.clear();
      f.lossPercent = 0;
      this.apply(name);
    }
  }

  private apply(name: string): void {
    const f = this.faults.get(name)!;
    const out = [...f.cutTo].map((ip) => `ip daddr ${ip} drop`);
    const inn = [...f.cutFrom].map((ip) => `ip saddr ${ip} drop`);
    if (f.lossPercent > 0) {
      // the test's own traffic (status polls) is never lost
      // (counted apart: what crossed a relay, what went between hosts directly)
      const share = f.lossPercent >= 100 ? "" : ` numgen random mod 10000 < ${Math.round(f.lossPercent * 100)}`;
      out.push(`ip daddr ${this.relayIp}${share} counter drop comment "loss-relay"`);
      inn.push(`ip saddr ${this.relayIp}${share} counter drop comment "loss-relay"`);
      out.push(`ip daddr != { ${this.testIp}, ${this.relayIp} }${share} counter drop comment "loss"`);
      inn.push(`ip saddr != { ${this.testIp}, ${this.relayIp} }${share} counter drop comment "loss"`);
    }
    const table = [
      "table inet lab",
      "delete table inet lab",
      "table inet lab {",
      "  chain output {",
      "    type filter hook output priority 0; policy accept;",
      ...out.map((r) => `    ${r}`),
      "  }",
      "  chain input {",
      "    type filter hook input priority 0; policy accept;",
      ...inn.map((r) => `    ${r}`),
      "  }",
      "}",
    ].join("\n");
    this.exec(name, ["nft", "-f", "-"], table + "\n");
  }

  /** Kills what still runs in the namespaces, removes them, their links and the bridge. */
  destroy(): void {
    liveLabs.delete(this);
    for (const h of this.hosts.values()) {
      const pids = spawnSync("ip", ["netns", "pids", h.netns], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
      for (const pid of pids) {
        try {
          process.kill(Number(pid), "SIGKILL");
        } catch {
          // gone already
        }
      }
      spawnSync("ip", ["netns", "del", h.netns]);
    }
    this.hosts.clear();
    spawnSync("ip", ["link", "del", this.bridge]);
  }
}
