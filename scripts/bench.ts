/**
 * `npm run bench`: speed and log-size targets, measured side by side in one run on this machine.
 *
 *  1. Deterministic vs stock v86 (instructions per second) on the same workloads, each measurement in
 *     a fresh process, alternating, median of several runs; both with lockstep's default wasm
 *     compiler (baseline), and stock v86 also with V8's default tier-up for comparison.
 *  2. Replay vs record wall time of the scripted linux session (test/fixtures/linux-session.script).
 *  3. Log bandwidth per second of guest time, idle and busy (target: idle <= 0.05 Mbit/s).
 *
 *  4. Fault tolerance: FT vs non-FT throughput, output-rule delay, backup lag, channel bandwidth,
 *     failover time over BENCH_KILLS kills (scripts/bench-ft.ts).
 *  5. The network under FT (scripts/bench-net.ts), and two hosts in network namespaces with etcd and
 *     NBD at 0, 1 and 10 ms one-way delay (scripts/bench-hosts.ts, BENCH_HOST_KILLS).
 *  6. The time-travel debugger on linux: stepi, reverse-stepi, continue, reverse-continue latency
 *     (scripts/bench-debug.ts).
 *
 * Environment: BENCH_RUNS (default 3), BENCH_KILLS (default 20), BENCH_PIN=1 (each FT node on a core of
 * its own, see scripts/bench-ft.ts).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { makeBlankDisk } from "../emulator/blank-disk.js";
import { loadMachine } from "../emulator/machine-config.js";
import { packageRoot } from "../emulator/package-root.js";
import { until } from "../ft/runtime/until.js";
import { encodeFrame } from "../hypervisor/log-file.js";
import { defaultClockParams } from "../hypervisor/machine-session.js";
import { RecordingMachine } from "../hypervisor/machine-thread/recording-machine.js";
import { debugBenchmarks } from "./bench-debug.js";
import { ftBenchmarks } from "./bench-ft.js";
import { hostsBenchmarks } from "./bench-hosts.js";
import { netBenchmarks } from "./bench-net.js";

const runs = Number(process.env.BENCH_RUNS ?? 3);
const root = packageRoot();
const node = process.execPath;
const worker = join(root, "dist", "scripts", "bench-worker.js");
const cli = join(root, "dist", "ft", "cli", "main.js");

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function measure(mode: string, workload: string, tier: string): { instructions: number; ms: number; mips: number } {
  const out = execFileSync(node, [worker, mode, workload], { encoding: "utf8", timeout: 300_000, env: { ...process.env, LOCKSTEP_WASM_TIER: tier } });
  return JSON.parse(out.trim().split("\n").at(-1)!);
}

/** What is measured per workload, alternating within each run: stock v86 with V8's tier-up, then stock and deterministic on lockstep's compiler. */
const speedModes = [
  { name: "stock, V8 tier-up", mode: "stock", tier: "optimizing" },
  { name: "stock", mode: "stock", tier: "baseline" },
  { name: "deterministic", mode: "deterministic", tier: "baseline" },
] as const;

function speed(): string[] {
  const rows: string[] = [];
  for (const workload of ["tiny-busy", "linux-loop", "linux-boot"]) {
    const results = speedModes.map(() => ({ mips: [] as number[], ms: [] as number[] }));
    for (let i = 0; i < runs; i++) {
      const line = speedModes.map((m, k) => {
        const r = measure(m.mode, workload, m.tier);
        results[k]!.mips.push(r.mips);
        results[k]!.ms.push(r.ms);
        return `${m.name} ${r.mips.toFixed(1)} MIPS (${r.ms.toFixed(0)} ms)`;
      });
      process.stderr.write(`  ${workload} run ${i + 1}: ${line.join("; ")}\n`);
    }
    const [stockV8, stock, det] = results.map((r) => ({ mips: median(r.mips), s: median(r.ms) / 1000 }));
    const cell = (r: { mips: number; s: number }) => `${r.mips.toFixed(1)} MIPS, ${r.s.toFixed(2)} s`;
    rows.push(`| ${workload} | ${cell(stockV8!)} | ${cell(stock!)} | ${cell(det!)} | ${(det!.mips / stock!.mips).toFixed(2)} | ${(det!.mips / stockV8!.mips).toFixed(2)} |`);
  }
  return rows;
}

function recordReplay(dir: string): string {
  const log = join(dir, "session.lslog");
  const script = join(root, "test", "fixtures", "linux-session.script");
  const env = { ...process.env, LOCKSTEP_LOG_LEVEL: "warn" };
  let t = performance.now();
  execFileSync(node, [cli, "record", "--image", "linux", "--out", log, "--force", "--input", script], { env, stdio: ["ignore", "ignore", "inherit"], timeout: 600_000 });
  const recordMs = performance.now() - t;
  t = performance.now();
  const summary = JSON.parse(execFileSync(node, [cli, "replay", "--json", log], { env, encoding: "utf8", timeout: 600_000 }));
  const replayMs = performance.now() - t;
  return `| scripted linux session (${(summary.guestMs / 1000).toFixed(1)} s guest, ${(summary.instructions / 1e6).toFixed(0)}M instr, ${statSync(log).size} log bytes) | record ${(recordMs / 1000).toFixed(2)} s | replay ${(replayMs / 1000).toFixed(2)} s | ${(recordMs / replayMs).toFixed(2)}x |`;
}

/** Log bytes per guest second while the linux guest idles at its prompt, then while it computes. */
async function bandwidth(): Promise<string[]> {
  const loaded = loadMachine("linux");
  const disk = makeBlankDisk(loaded.config.disk!);
  let bytes = 0;
  let out = "";
  const decoder = new TextDecoder();
  // recorded as `lockstep record` records: a machine thread, a progress entry every 100 ms
  const machine = await RecordingMachine.start({
    image: "linux",
    clock: defaultClockParams(Date.now(), 1),
    paced: true,
    digestEverySlices: 1000,
    disk,
    progressEveryMs: 100,
    onEntries: (entries) => entries.forEach((e) => (bytes += encodeFrame(e).length)),
    onOutput: (data) => (out += decoder.decode(data)),
  });
  const printed = (re: RegExp) => until(() => re.test(out), 300_000, `${re} on the console`, 10);
  await printed(/lockstep:\/root# /);
  const phase = async (name: string, start: () => void, done: () => Promise<void>) => {
    const b0 = bytes;
    const g0 = machine.guestMs;
    start();
    await done();
    const guestS = (machine.guestMs - g0) / 1000;
    const mbit = ((bytes - b0) * 8) / guestS / 1e6;
    return `| ${name} | ${guestS.toFixed(1)} s guest | ${bytes - b0} bytes | ${mbit.toFixed(4)} Mbit/s |`;
  };
  const idle = await phase("idle at the shell prompt", () => {}, () => new Promise((r) => setTimeout(r, 10_000)));
  out = "";
  const busy = await phase(
    "busy (shell arithmetic loop)",
    () => machine.type(new TextEncoder().encode("i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done; echo bu''sy-done\r")),
    () => printed(/busy-done\r\n/),
  );
  await machine.stop();
  return [idle, busy];
}

const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-"));
try {
  const date = new Date().toISOString().slice(0, 10);
  const machine = `${cpus().length} × ${cpus()[0]?.model.trim() ?? "cpu"}, Node ${process.version}`;
  process.stderr.write(`lockstep benchmarks, ${date}, ${machine}, ${runs} runs each\n`);
  const speedRows = speed();
  const rr = recordReplay(dir);
  const bw = await bandwidth();
  const ft = await ftBenchmarks(Number(process.env.BENCH_KILLS ?? 20));
  const net = await netBenchmarks();
  const hosts = await hostsBenchmarks(Number(process.env.BENCH_HOST_KILLS ?? 5));
  const debug = await debugBenchmarks();
  const lines = [
    `Measured ${date} on ${machine}; median of ${runs} runs, each in a fresh process.`,
    "",
    "| workload | stock v86, V8 tier-up | stock v86, baseline | deterministic, baseline | ratio, same compiler (target >= 0.95) | ratio to stock with V8 tier-up |",
    "|---|---|---|---|---|---|",
    ...speedRows,
    "",
    "| recording | record | replay | replay speed-up (target >= 1) |",
    "|---|---|---|---|",
    rr,
    "",
    "| log bandwidth | guest time | log | rate (target: idle <= 0.05, busy <= 0.1 Mbit/s) |",
    "|---|---|---|---|",
    ...bw,
    "",
    ...ft,
    "",
    ...net,
    "",
    ...hosts,
    "",
    ...debug,
  ];
  process.stdout.write(lines.join("\n") + "\n");
} finally {
  rmSync(dir, { recursive: true, force: true });
}
