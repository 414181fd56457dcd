/**
 * Network benchmarks (part of `npm run bench`; alone: `npm run bench:net`), with real processes on
 * loopback and passt (user mode): guest network throughput from the host to the guest (receive) and
 * from the guest to the host (transmit), on a primary alone and with a live backup, side by side —
 * the paper's Table 2 — and the logging channel's bandwidth while the guest receives (its Table 1).
 * A receive is logged (every frame in is a log entry); a transmit is output held by the output rule.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { ConsoleClient } from "../ft/runtime/console-client.js";
import { freePort } from "../ft/runtime/free-port.js";
import { stopPairPasst } from "../ft/runtime/net-spec.js";
import { NodeProcess } from "../ft/runtime/node-process.js";
import { until } from "../ft/runtime/until.js";

const token = "benchmark-token-0123";
const mib = Number(process.env.BENCH_NET_MIB ?? 4);

/** Throughput in MB/s each way and the log's bandwidth while receiving, on a primary with or without a backup. */
export async function netThroughput(withBackup: boolean): Promise<{ rxMBps: number; txMBps: number; rxLogMbitPerS: number }> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-net-"));
  const procs: NodeProcess[] = [];
  const [rxPort, txPort] = [await freePort(), await freePort()];
  const net = ["--net", `user:${rxPort}=7001,${txPort}=7002`];
  try {
    const start = (role: "primary" | "backup", name: string, args: string[]) => NodeProcess.start({ role, name, sharedDir: dir, token, args: [...args, ...net], logLevel: "warn", stderr: "ignore" });
    const a = await start("primary", "A", ["--image", "linux"]);
    procs.push(a);
    const b = withBackup ? await start("backup", "B", ["--connect", a.url]) : undefined;
    if (b) procs.push(b);
    const c = new ConsoleClient({ urls: [a.url], token });
    let out = "";
    c.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    c.start();
    await until(() => /lockstep:\/root# /.test(out), 120_000, "the prompt");
    if (b) await until(async () => (await a.status()).protected === true, 60_000, "protection");
    const bytes = mib * 2 ** 20;

    // receive: the host sends, the guest counts
    c.send(Buffer.from("nc -l -p 7001 | wc -c; echo rx''-done\r"));
    await new Promise((r) => setTimeout(r, 1000));
    const s0 = await a.status<Record<string, any>>();
    const t0 = performance.now();
    await new Promise<void>((resolve, reject) => {
      const s = connect(rxPort, "127.0.0.1", () => s.end(Buffer.alloc(bytes, 0x61)));
      s.on("error", reject);
      s.on("close", () => resolve());
      s.resume();
    });
    await until(() => out.includes("rx-done\r\n"), 300_000, "the guest to count what it received", 5);
    const rxS = (performance.now() - t0) / 1000;
    const s1 = await a.status<Record<string, any>>();
    if (!out.includes(String(bytes))) throw new Error(`the guest did not count ${bytes} bytes: ${out.slice(-300)}`);

    // transmit: the guest sends, the host counts (the host speaks first: passt needs it)
    c.send(Buffer.from(`dd if=/dev/zero bs=64k count=${mib * 16} 2>/dev/null | nc -l -p 7002 >/dev/null; echo tx''-done\r`));
    await new Promise((r) => setTimeout(r, 1000));
    const t1 = performance.now();
    await new Promise<void>((resolve, reject) => {
      let got = 0;
      const s = connect(txPort, "127.0.0.1", () => s.write("go\n"));
      s.on("data", (d: Buffer) => {
        got += d.length;
        if (got >= bytes) {
          s.destroy();
          resolve();
        }
      });
      s.on("error", reject);
      s.on("close", () => (got >= bytes ? resolve() : reject(new Error(`the guest sent ${got} of ${bytes} bytes`))));
    });
    const txS = (performance.now() - t1) / 1000;
    c.close();
    return { rxMBps: bytes / 1e6 / rxS, txMBps: bytes / 1e6 / txS, rxLogMbitPerS: ((s1.peerBytesSent - s0.peerBytesSent) * 8) / rxS / 1e6 };
  } finally {
    for (const p of procs) p.kill("SIGKILL");
    stopPairPasst(dir);
    rmSync(dir, { recursive: true, force: true });
  }
}

const runs = Number(process.env.BENCH_NET_RUNS ?? 3);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

export async function netBenchmarks(): Promise<string[]> {
  const results: Record<"alone" | "ft", Array<Awaited<ReturnType<typeof netThroughput>>>> = { alone: [], ft: [] };
  // alternated, so that a slow spell of the host weighs on both alike
  for (let i = 0; i < runs; i++) {
    for (const k of ["alone", "ft"] as const) {
      process.stderr.write(`  net: throughput ${k === "ft" ? "with a live backup" : "on a primary alone"}, run ${i + 1}/${runs} ...\n`);
      results[k].push(await netThroughput(k === "ft"));
    }
  }
  const pick = (k: "alone" | "ft") => ({ rxMBps: median(results[k].map((r) => r.rxMBps)), txMBps: median(results[k].map((r) => r.txMBps)), rxLogMbitPerS: median(results[k].map((r) => r.rxLogMbitPerS)) });
  const alone = pick("alone");
  const ft = pick("ft");
  return [
    `| guest network (passt, ${mib} MiB each way, median of ${runs}) | primary alone | with live backup | ratio |`,
    "|---|---|---|---|",
    `| receive (host -> guest) | ${alone.rxMBps.toFixed(2)} MB/s | ${ft.rxMBps.toFixed(2)} MB/s | ${(ft.rxMBps / alone.rxMBps).toFixed(2)} |`,
    `| transmit (guest -> host) | ${alone.txMBps.toFixed(2)} MB/s | ${ft.txMBps.toFixed(2)} MB/s | ${(ft.txMBps / alone.txMBps).toFixed(2)} |`,
    `| logging channel while the guest receives | | ${ft.rxLogMbitPerS.toFixed(1)} Mbit/s | |`,
  ];
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) {
  const rows = await netBenchmarks();
  process.stdout.write(rows.join("\n") + "\n");
}
