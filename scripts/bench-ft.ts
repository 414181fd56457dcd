/**
 * Fault-tolerance benchmarks (part of `npm run bench`), with real processes on loopback:
 *  - throughput of a CPU-bound guest loop on an FT primary with a live backup vs a primary alone;
 *  - output-rule delay and backup lag distributions (from the primary's /status);
 *  - logging-channel bandwidth, idle and busy;
 *  - failover time, SIGKILL of the primary -> first console byte from the new primary, over N kills.
 *
 * The shell loop and the disk runs are measured twice, unpinned and with each node pinned to a core
 * of its own (taskset: A and C, which never run at the same time, on CPU 0, B on CPU 1), as if the
 * two nodes ran on two hosts. BENCH_PIN=1 pins the other measurements too.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleClient } from "../ft/runtime/console-client.js";
import { NodeProcess, type NodeRole } from "../ft/runtime/node-process.js";
import { until } from "../ft/runtime/until.js";

const token = "benchmark-token-0123";
/** Set per measurement by ftBenchmarks (BENCH_PIN=1 pins the ones that are not run both ways). */
let pinned = process.env.BENCH_PIN === "1";

function startNode(dir: string, role: NodeRole, name: "A" | "B" | "C", args: string[]): Promise<NodeProcess> {
  const cpus = pinned ? (name === "B" ? "1" : "0") : undefined;
  return NodeProcess.start({ role, name, sharedDir: dir, token, args, logLevel: "warn", stderr: "ignore", ...(cpus !== undefined ? { cpus } : {}) });
}

const status = (node: NodeProcess) => node.status<Record<string, any>>(10_000);

export const loop = "i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; echo lo''op-done\r";

/** Runs the linux loop on a primary, with or without a backup; returns seconds and the primary's status. */
export async function linuxLoop(withBackup: boolean): Promise<{ seconds: number; status: Record<string, any>; idleBytesPerS: number; busyBytesPerS: number }> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-ft-"));
  const procs: NodeProcess[] = [];
  const client = (a: NodeProcess, b?: NodeProcess) => new ConsoleClient({ urls: [a.url, ...(b ? [b.url] : [])], token });
  try {
    const a = await startNode(dir, "primary", "A", ["--image", "linux"]);
    procs.push(a);
    const b = withBackup ? await startNode(dir, "backup", "B", ["--connect", a.url]) : undefined;
    if (b) procs.push(b);
    const c = client(a, b);
    let out = "";
    c.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    c.start();
    await until(() => /lockstep:\/root# /.test(out), 120_000, "the prompt");
    if (b) await until(async () => (await status(a)).protected === true, 60_000, "protection");
    // idle: 5 s at the prompt
    const s0 = await status(a);
    await new Promise((r) => setTimeout(r, 5000));
    const s1 = await status(a);
    const idleBytesPerS = (s1.peerBytesSent - s0.peerBytesSent) / 5;
    const t0 = performance.now();
    c.send(Buffer.from(loop));
    await until(() => out.includes("loop-done\r\n"), 300_000, "the loop", 5);
    const seconds = (performance.now() - t0) / 1000;
    const s2 = await status(a);
    c.close();
    return { seconds, status: s2, idleBytesPerS, busyBytesPerS: (s2.peerBytesSent - s1.peerBytesSent) / seconds };
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

const diskMiB = 8;
const writeCmd = `dd if=/dev/zero of=/mnt/big bs=64k count=${diskMiB * 16} 2>/dev/null; sync; echo w''-done\r`;
const readCmd = "umount /mnt && mount -t ext2 /dev/sda /mnt && cat /mnt/big > /dev/null; echo r''-done\r";

/** Guest disk write and read throughput (MB/s) on the shared disk, with or without a backup; log bytes sent per MB read. */
export async function diskThroughput(withBackup: boolean): Promise<{ writeMBps: number; readMBps: number; logBytesPerMBRead: number }> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-disk-"));
  const procs: NodeProcess[] = [];
  try {
    const a = await startNode(dir, "primary", "A", ["--image", "linux"]);
    procs.push(a);
    const b = withBackup ? await startNode(dir, "backup", "B", ["--connect", a.url]) : undefined;
    if (b) procs.push(b);
    const c = new ConsoleClient({ urls: [a.url], token });
    let out = "";
    c.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    c.start();
    await until(() => /lockstep:\/root# /.test(out), 120_000, "the prompt");
    if (b) await until(async () => (await status(a)).protected === true, 60_000, "protection");
    const timed = async (cmd: string, marker: string) => {
      const t0 = performance.now();
      c.send(Buffer.from(cmd));
      await until(() => out.includes(marker), 300_000, marker, 5);
      return (performance.now() - t0) / 1000;
    };
    const writeS = await timed(writeCmd, "w-done\r\n");
    const s0 = await status(a);
    const readS = await timed(readCmd, "r-done\r\n");
    const s1 = await status(a);
    c.close();
    const mb = (diskMiB * 2 ** 20) / 1e6;
    return { writeMBps: mb / writeS, readMBps: mb / readS, logBytesPerMBRead: (s1.peerBytesSent - s0.peerBytesSent) / mb };
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Re-protection: a linux primary takes over, a new backup joins it from a checkpoint (--join). */
export async function joinCost(): Promise<{ pauseMs: number; protectMs: number; rawBytes: number; bytes: number }> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-join-"));
  const procs: NodeProcess[] = [];
  try {
    const a = await startNode(dir, "primary", "A", ["--image", "linux"]);
    procs.push(a);
    const b = await startNode(dir, "backup", "B", ["--connect", a.url]);
    procs.push(b);
    const c = new ConsoleClient({ urls: [a.url], token });
    let out = "";
    c.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    c.start();
    await until(() => /lockstep:\/root# /.test(out), 120_000, "the prompt");
    c.send(Buffer.from("i=0; while true; do i=$((i+1)); done &\r")); // a busy guest
    c.close();
    await until(async () => (await status(a)).protected === true, 60_000, "protection");
    a.kill("SIGKILL");
    await b.waitEvent("live", 30_000);
    const t0 = performance.now();
    const n = await startNode(dir, "backup", "C", ["--connect", b.url, "--join"]);
    procs.push(n);
    await until(async () => (await status(b)).protected === true, 60_000, "re-protection");
    const protectMs = performance.now() - t0;
    const j = (await status(b)).lastJoin as { pauseMs: number; rawBytes: number; bytes: number };
    return { pauseMs: j.pauseMs, protectMs, rawBytes: j.rawBytes, bytes: j.bytes };
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One SIGKILL of a protected tiny primary: ms until the first console byte from the new primary. */
async function oneFailover(): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-fo-"));
  const procs: NodeProcess[] = [];
  try {
    const a = await startNode(dir, "primary", "A", ["--image", "tiny"]);
    procs.push(a);
    const b = await startNode(dir, "backup", "B", ["--connect", a.url]);
    procs.push(b);
    await until(async () => (await status(a)).protected === true, 30_000, "protection");
    const c = new ConsoleClient({ urls: [a.url, b.url], token });
    let killedAt: number | undefined;
    let firstByteMs: number | undefined;
    c.on("output", () => {
      if (killedAt !== undefined && firstByteMs === undefined && c.connectedTo === b.url) firstByteMs = performance.now() - killedAt;
    });
    c.start();
    await until(() => c.connectedTo !== undefined, 10_000, "the console");
    // the guest answers a ping every 20 ms, so output flows whenever a primary is live
    const pinger = setInterval(() => c.send(Buffer.from("ping\r")), 20);
    await new Promise((r) => setTimeout(r, 200 + Math.random() * 300));
    killedAt = performance.now();
    a.kill("SIGKILL");
    await until(() => firstByteMs !== undefined, 10_000, "output from the new primary");
    clearInterval(pinger);
    c.close();
    return firstByteMs!;
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    rmSync(dir, { recursive: true, force: true });
  }
}

const pct = (xs: number[], q: number) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))]!;

export async function ftBenchmarks(kills: number): Promise<string[]> {
  const pinByDefault = pinned;
  const both = async <T>(what: string, run: () => Promise<T>): Promise<{ free: T; pin: T }> => {
    pinned = false;
    process.stderr.write(`  FT: ${what}, unpinned ...\n`);
    const free = await run();
    pinned = true;
    process.stderr.write(`  FT: ${what}, each node pinned to its own core ...\n`);
    const pin = await run();
    pinned = pinByDefault;
    return { free, pin };
  };
  const alone = await both("linux loop without a backup", () => linuxLoop(false));
  const ft = await both("linux loop with a live backup", () => linuxLoop(true));
  const diskAlone = await both("disk throughput without a backup", () => diskThroughput(false));
  const diskFt = await both("disk throughput with a live backup", () => diskThroughput(true));
  process.stderr.write("  FT: re-protection from a checkpoint ...\n");
  const joinResult = await joinCost();
  const failovers: number[] = [];
  for (let i = 0; i < kills; i++) {
    failovers.push(await oneFailover());
    process.stderr.write(`  FT: failover ${i + 1}/${kills}: ${failovers.at(-1)!.toFixed(0)} ms\n`);
  }
  const mbit = (bytesPerS: number) => ((bytesPerS * 8) / 1e6).toFixed(4);
  const rows: string[] = ["| FT measurement | unpinned | pinned (one core per node) | target (pinned) |", "|---|---|---|---|"];
  const row = (what: string, f: (k: "free" | "pin") => string, target: string) => rows.push(`| ${what} | ${f("free")} | ${f("pin")} | ${target} |`);
  row("shell loop, primary alone / with live backup (throughput ratio)", (k) => `${alone[k].seconds.toFixed(2)} s / ${ft[k].seconds.toFixed(2)} s = ${(alone[k].seconds / ft[k].seconds).toFixed(2)}`, ">= 0.90");
  row("output-rule delay p50 / p99", (k) => `${ft[k].status.outputDelayMs.p50} / ${ft[k].status.outputDelayMs.p99} ms (n=${ft[k].status.outputDelayMs.n})`, "p99 <= 3 ms");
  row("backup lag p50 / p99", (k) => `${ft[k].status.backupLagMs.p50} / ${ft[k].status.backupLagMs.p99} ms (n=${ft[k].status.backupLagMs.n})`, "p99 <= 50 ms");
  row("logging channel, idle / busy", (k) => `${mbit(ft[k].idleBytesPerS)} / ${mbit(ft[k].busyBytesPerS)} Mbit/s`, "<= 0.05 / 0.1");
  row(`guest disk write ${diskMiB} MiB (dd + sync), alone / with live backup`, (k) => `${diskAlone[k].writeMBps.toFixed(2)} / ${diskFt[k].writeMBps.toFixed(2)} MB/s = ${(diskFt[k].writeMBps / diskAlone[k].writeMBps).toFixed(2)}`, ">= 0.7");
  row(`guest disk read ${diskMiB} MiB (after remount), alone / with live backup`, (k) => `${diskAlone[k].readMBps.toFixed(2)} / ${diskFt[k].readMBps.toFixed(2)} MB/s = ${(diskFt[k].readMBps / diskAlone[k].readMBps).toFixed(2)}`, "");
  row("logging channel bytes per MB the guest read", (k) => `${(diskFt[k].logBytesPerMBRead / 1e6).toFixed(3)} MB/MB`, "~1 (read data travels in the log)");
  return [
    ...rows,
    "",
    "| FT measurement | value | target |",
    "|---|---|---|",
    `| re-protection (--join, 128 MiB linux guest, busy): primary pause / until protected | ${joinResult.pauseMs.toFixed(0)} ms / ${(joinResult.protectMs / 1000).toFixed(2)} s | pause < 1 s |`,
    `| checkpoint size raw / compressed | ${(joinResult.rawBytes / 2 ** 20).toFixed(1)} MiB / ${(joinResult.bytes / 2 ** 20).toFixed(1)} MiB | |`,
    `| failover, SIGKILL -> first console byte from the new primary (${kills} kills) | p50 ${pct(failovers, 0.5).toFixed(0)} ms, max ${Math.max(...failovers).toFixed(0)} ms | <= 1000 ms |`,
  ];
}
