/**
 * `npm run bench:debug` (and part of `npm run bench`): the time-travel debugger's latency on the
 * linux guest. A session where the shell runs a command is recorded without the JIT (so every slice
 * steps exactly); the debugger opens 60 slices before its end, breaks on the kernel's page-fault
 * handler (scripts/linux-page-fault.ts), and times each motion gdb asks for: stepi, reverse-stepi,
 * continue to the next call and reverse-continue to the previous one. Medians of several, in this
 * process (what `lockstep debug --gdb` does for each gdb request, without the wire).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { packageRoot } from "../emulator/package-root.js";
import { LogReader } from "../hypervisor/log-file.js";
import { ReplayDebugger } from "../hypervisor/replay-debugger.js";
import { linuxPageFaultHandler } from "./linux-page-fault.js";

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

async function timed<T>(f: () => Promise<T>): Promise<[T, number]> {
  const t = performance.now();
  const r = await f();
  return [r, performance.now() - t];
}

export async function debugBenchmarks(): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-bench-debug-"));
  try {
    const script = join(dir, "session.script");
    writeFileSync(script, ['wait "lockstep:/root# "', 'sendline "ls /proc/self"', 'wait "lockstep:/root# "', ""].join("\n"));
    const file = join(dir, "linux.lslog");
    const cli = join(packageRoot(), "dist", "ft", "cli", "main.js");
    execFileSync(process.execPath, [cli, "record", "--image", "linux", "--no-jit", "--input", script, "--out", file], { stdio: "ignore", env: { ...process.env, LOCKSTEP_LOG_LEVEL: "warn" } });
    const reader = new LogReader(file);
    let last = 0;
    for (let e = reader.next(); e; e = reader.next()) last = Math.max(last, e.slice);
    reader.close();
    const at = last - 60;
    const [d, openMs] = await timed(async () => {
      const d = await ReplayDebugger.open({ file });
      await d.goto({ slice: at, instruction: 0 });
      return d;
    });
    try {
      const handler = linuxPageFaultHandler(d);
      if (handler === undefined) throw new Error("the page-fault entry stub is not as expected: no handler to break on");
      d.breakpoints.add(handler);
      const cont: number[] = [];
      for (let i = 0; i < 9; i++) {
        const [stop, ms] = await timed(() => d.cont());
        if (stop !== "breakpoint") break;
        cont.push(ms);
      }
      const reverseCont: number[] = [];
      for (let i = 0; i < 5; i++) {
        const [stop, ms] = await timed(() => d.reverseCont());
        if (stop !== "breakpoint") break;
        reverseCont.push(ms);
      }
      const stepi: number[] = [];
      for (let i = 0; i < 50; i++) stepi.push((await timed(() => d.stepi()))[1]);
      const reverseStepi: number[] = [];
      for (let i = 0; i < 20; i++) reverseStepi.push((await timed(() => d.reverseStepi()))[1]);
      const ms = (xs: number[]) => (xs.length > 0 ? `${median(xs).toFixed(1)} ms (${xs.length})` : "none");
      return [
        `Debugger on the linux guest (recorded with --no-jit, ${last} slices; opened at slice ${at} in ${(openMs / 1000).toFixed(1)} s; breakpoint on exc_page_fault). Median latency (samples):`,
        "",
        "| stepi | reverse-stepi | continue (next call) | reverse-continue (previous call) |",
        "|---|---|---|---|",
        `| ${ms(stepi)} | ${ms(reverseStepi)} | ${ms(cont)} | ${ms(reverseCont)} |`,
      ];
    } finally {
      d.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? "").href) process.stdout.write((await debugBenchmarks()).join("\n") + "\n");
