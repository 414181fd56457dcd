/**
 * `npm run soak:pair` — a protected linux pair for a long run under a mixed load, with a primary
 * killed and a new backup joining every few minutes; the numbers for "a pair that runs for weeks".
 *
 *   SOAK_MINUTES        guest minutes to run (default 30)
 *   SOAK_KILL_MINUTES   guest minutes between kills of the primary (default 4)
 *
 * Load: a CPU loop, a disk writer that writes, syncs, drops the page cache and reads its files
 * back (so reads reach the shared disk and are logged), and console input typed every few seconds
 * (`echo tick<n>`). After each kill the survivor goes on and a new backup joins it, alternately
 * with --join and without (then the primary sends a checkpoint unless its log is still whole from
 * power-on). Every guest minute it prints each node's memory (RSS, heap) and the log it holds.
 *
 * Before the load the guest touches most of its RAM once (a tmpfs file, freed again), so that a node
 * from power-on holds in host memory every guest page a long run uses, as a node built from a
 * checkpoint does by construction.
 *
 * At the end: every node process's RSS stayed within 20% of what it had one minute after it
 * was last protected in a new role (a backup once caught up or built from its checkpoint; a primary
 * that took over once it has served its first checkpoint): memory steps once per role, since a node
 * that serves a checkpoint keeps what it took to build one, and must be flat after that; its JS heap
 * did not grow (the median of the last third of that window's samples within 20%, or 8 MiB, of the
 * first third's: a small heap rises and falls with collections); the console stream had no gap and every
 * tick came back exactly once, in order; the guest unmounts the disk and e2fsck finds it clean. One
 * JSON line on stdout; exit status 1 if any check failed.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleClient, type ConsoleGap } from "../ft/runtime/console-client.js";
import { NodeProcess, type NodeRole } from "../ft/runtime/node-process.js";
import { until } from "../ft/runtime/until.js";
import { grown, memoryKinds, readMappings, type Mapping } from "./host-memory.js";

const minutes = Number(process.env.SOAK_MINUTES ?? 30);
const killMinutes = Number(process.env.SOAK_KILL_MINUTES ?? 4);
const token = "soak-token-0123456";
const dir = mkdtempSync(join(tmpdir(), "lockstep-soak-pair-"));
const nodes: NodeProcess[] = [];
type Status = Record<string, any>;

interface Sample {
  guestMin: number;
  role: string;
  rss: number;
  heapUsed: number;
  logEntries: number;
  logBytes: number;
}
/** Memory samples per node process, and the guest minute from which its memory must stay flat. */
const samples = new Map<string, { from?: number; role?: string; list: Sample[]; maps?: { first: Mapping[]; last: Mapping[] } }>();

async function start(role: NodeRole, name: string, args: string[]): Promise<NodeProcess> {
  const node = await NodeProcess.start({ role, name, sharedDir: dir, token, args, logLevel: "warn", stderr: "capture" });
  nodes.push(node);
  samples.set(name, { list: [] });
  return node;
}
const status = (node: NodeProcess): Promise<Status> => node.status<Status>(10_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const say = (line: string) => process.stderr.write(line + "\n");

let out = "";
const gaps: ConsoleGap[] = [];
const client = new ConsoleClient({ urls: [], token });
client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
client.on("gap", (g: ConsoleGap) => gaps.push(g));
const ticks = () => [...out.matchAll(/^tick(\d+)\r$/gm)].map((m) => Number(m[1]));

let ok = true;
const fail = (why: string) => {
  ok = false;
  say(`FAIL: ${why}`);
};

try {
  let primary = await start("primary", "P0", ["--image", "linux"]);
  let backup = await start("backup", "B0", ["--connect", primary.url]);
  client.addUrl(primary.url);
  client.addUrl(backup.url);
  client.start();
  await until(() => /lockstep:\/root# /.test(out), 300_000, "the prompt");
  // Warm-up: touch most of guest RAM once (a tmpfs file, then freed), as a node built from a
  // checkpoint has by construction; host memory then holds every guest page a long run will use,
  // and what the check below sees growing is the host's, not the guest's page cache filling up.
  client.send(Buffer.from("mkdir -p /tmp/fill && mount -t tmpfs -o size=80m fill /tmp/fill && dd if=/dev/zero of=/tmp/fill/z bs=1M count=80 2>/dev/null; rm -f /tmp/fill/z; umount /tmp/fill; echo warm-$?\r"));
  await until(() => /warm-0\r/.test(out), 120_000, () => `the warm-up; tail ${JSON.stringify(out.slice(-300))}`);
  client.send(Buffer.from("(while true; do i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; usleep 100000; done) &\r"));
  client.send(Buffer.from("(n=0; while true; do n=$((n+1)); f=/mnt/w$((n%8)); seq $n $((n+20000)) > $f; sync; echo 3 > /proc/sys/vm/drop_caches; cat /mnt/w* | md5sum > /dev/null; usleep 300000; done) &\r"));
  await until(async () => (await status(primary)).protected === true, 120_000, "the backup to protect the primary");
  const t0 = (await status(primary)).guestMs as number;
  const guestMin = (s: Status) => ((s.guestMs as number) - t0) / 60_000;
  let nextKill = killMinutes;
  let nextSample = 0;
  let tick = 0;
  let generation = 0;
  for (;;) {
    await sleep(3000);
    client.send(Buffer.from(`echo tick${++tick}\r`));
    const p = await status(primary);
    const g = guestMin(p);
    if (p.role !== "primary") fail(`${primary.name} is ${p.role}: ${p.haltReason ?? ""}`);
    if (g >= nextSample) {
      nextSample = Math.floor(g) + 1;
      const line: string[] = [`guest ${g.toFixed(1)} min`];
      for (const n of [primary, backup]) {
        const s = await status(n).catch(() => undefined);
        if (!s) continue;
        const rec = samples.get(n.name)!;
        // flat from one guest minute after it counted as protected in its present role (a takeover
        // starts the wait again: the new primary's first checkpoint served is its one step)
        if (rec.role !== undefined && rec.role !== s.role) {
          rec.from = undefined;
          rec.maps = undefined; // the window starts again, and with it what "grown" compares against
        }
        rec.role = s.role;
        if (rec.from === undefined && (s.protected === true || (s.role === "backup" && p.protected === true && p.backup === n.name))) rec.from = g + 1;
        rec.list.push({ guestMin: g, role: s.role, rss: s.memory.rss, heapUsed: s.memory.heapUsed, logEntries: s.logHeld?.entries ?? 0, logBytes: s.logHeld?.bytes ?? 0 });
        const mt = s.memory.machine;
        const where = `buffers ${s.memory.arrayBuffers}${mt ? `, machine thread heap ${mt.heapUsed} buffers ${mt.arrayBuffers}` : ""}`;
        // where the resident memory lives (brk heap, compiled code, other anonymous, files), from the
        // window's start on: what grows is named at the end
        const maps = n.pid === undefined ? undefined : readMappings(n.pid);
        if (maps && rec.from !== undefined && g >= rec.from) rec.maps = { first: rec.maps?.first ?? maps, last: maps };
        const k = maps && memoryKinds(maps);
        const kinds = k ? ` [brk ${k.brk} code ${k.code} anon ${k.anon} (${k.anonMappings} maps) file ${k.file}]` : "";
        line.push(`${n.name} ${s.role} rss ${s.memory.rss} MiB${kinds} heap ${s.memory.heapUsed} MiB (${where}) log ${s.logHeld?.entries ?? 0} entries ${((s.logHeld?.bytes ?? 0) / 2 ** 20).toFixed(1)} MiB`);
      }
      say(line.join(" | "));
    }
    if (g >= minutes) break;
    if (g >= nextKill && p.protected === true) {
      nextKill = g + killMinutes;
      generation++;
      say(`guest ${g.toFixed(1)} min: SIGKILL ${primary.name}`);
      primary.kill("SIGKILL");
      await backup.waitEvent("live", 15_000);
      primary = backup;
      const join = generation % 2 === 1;
      backup = await start("backup", `B${generation}`, ["--connect", primary.url, ...(join ? ["--join"] : [])]);
      client.addUrl(backup.url);
      await until(async () => (await status(primary)).protected === true, 300_000, () => `${backup.name} to protect ${primary.name}: ${backup.stderr.slice(-1500)}`);
      const s = await status(primary);
      say(`  ${backup.name} protects ${primary.name} (${join ? "--join" : "no --join"}): checkpoint pause ${Math.round(s.lastJoin?.pauseMs ?? 0)} ms, ${s.lastJoin?.bytes ?? "-"} bytes; protected after ${s.lastJoinProtectedMs ?? "-"} ms, the guest held ${s.lastJoinGuestHeldMs ?? "-"} ms of it`);
    }
  }
  // the console: every tick answered once, in order, and no gap
  const lastTick = tick;
  await until(() => (ticks().at(-1) ?? 0) >= lastTick, 60_000, "the last tick's answer");
  ticks().forEach((n, i) => n !== i + 1 && fail(`tick line ${i} is tick${n}`));
  if (gaps.length > 0) fail(`console gaps: ${JSON.stringify(gaps)}`);
  client.send(Buffer.from("kill %1 %2; sleep 1; umount /mnt; echo umount-status-$?\r"));
  await until(() => /umount-status-0/.test(out), 60_000, () => `umount; tail ${JSON.stringify(out.slice(-300))}`);
  for (const n of nodes) n.kill("SIGKILL");
  const fsck = spawnSync("e2fsck", ["-fn", join(dir, "disk-linux.img")], { encoding: "utf8" });
  if (fsck.status !== 0) fail(`e2fsck: ${fsck.stdout}${fsck.stderr}`);
  // memory: flat within 20% from a minute after each process was protected in its last role
  const memory: Record<string, unknown> = {};
  for (const [name, rec] of samples) {
    const flat = rec.list.filter((s) => rec.from !== undefined && s.guestMin >= rec.from);
    if (flat.length < 2) continue;
    const base = flat[0]!;
    const rssMax = Math.max(...flat.map((s) => s.rss));
    // the heap is judged on its trend, the median of the window's last third of samples against its
    // first third: a heap this small (15-30 MiB) rises and falls with collections, and a sample or
    // three taken before one is not growth; a leak raises the whole last third
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const third = Math.max(1, Math.floor(flat.length / 3));
    const heapFirst = median(flat.slice(0, third).map((s) => s.heapUsed));
    const heapLast = median(flat.slice(-third).map((s) => s.heapUsed));
    const logMax = Math.max(...flat.map((s) => s.logBytes));
    memory[name] = { minutes: +(flat.at(-1)!.guestMin - base.guestMin).toFixed(1), rssFirst: base.rss, rssMax, heapFirst, heapLast, heapRawMax: Math.max(...flat.map((s) => s.heapUsed)), logBytesMax: logMax };
    if (rec.maps) say(`${name}: mappings grown most in its window: ${JSON.stringify(grown(rec.maps.first, rec.maps.last))}`);
    if (rssMax > base.rss * 1.2) fail(`${name}: RSS grew ${base.rss} -> ${rssMax} MiB`);
    if (heapLast > heapFirst * 1.2 && heapLast - heapFirst > 8) fail(`${name}: heap grew ${heapFirst} -> ${heapLast} MiB (median of the first and last third of the samples)`);
  }
  process.stdout.write(JSON.stringify({ ok, minutes, kills: generation, ticks: tick, gaps: gaps.length, fsckClean: fsck.status === 0, memory }) + "\n");
  process.exitCode = ok ? 0 : 1;
} finally {
  client.close();
  for (const n of nodes) n.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
