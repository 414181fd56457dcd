// Shared by the shared-disk failover tests (file and NBD backends), with real processes: the linux guest appends numbered records
// to a file on its disk, with `sync` after each, and reports each durable record on the console.
// In each run the primary is SIGKILLed twice at random moments: after the
// first takeover a fresh backup joins the new primary (catching up from power-on, which is why runs
// are short: re-protection from a snapshot is another issue) before the second kill. At the end of a
// run the guest unmounts the disk and the shared disk must be clean (`e2fsck -fn`) and hold every
// record the console client saw reported — with the file backend and with NBD (nbdkit).
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, expect } from "vitest";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import type { NodeProcess } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";
import { TestCluster, token } from "./cluster.js";

export const killsPerRun = 2;
const clusters: TestCluster[] = [];
const servers: ChildProcess[] = [];
afterAll(async () => {
  for (const s of servers) s.kill("SIGKILL");
  for (const c of clusters) await c.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Starts nbdkit serving `file` on a unix socket; resolves with the NBD URL once it accepts connections. */
async function startNbdkit(dir: string, file: string): Promise<string> {
  const socket = join(dir, "nbd.sock");
  const child = spawn("nbdkit", ["--foreground", "--exit-with-parent", "--unix", socket, "file", `file=${file}`], { stdio: ["ignore", "ignore", "pipe"] });
  servers.push(child);
  let stderr = "";
  child.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  await until(() => existsSync(socket), 10_000, () => `nbdkit to listen: ${stderr}`);
  return `nbd+unix:///?socket=${encodeURIComponent(socket)}`;
}

export async function writeRecordsThroughKills(backend: "file" | "nbd", kills: number): Promise<void> {
  const cluster = new TestCluster();
  clusters.push(cluster);
  const diskPath = join(cluster.dir, "shared.img");
  writeFileSync(diskPath, makeBlankDisk({ sizeMiB: 16, format: "ext2" }));
  const diskArg = backend === "nbd" ? await startNbdkit(cluster.dir, diskPath) : diskPath;
  let primary: NodeProcess = await cluster.start("P0", "primary", ["--image", "linux", "--disk", diskArg]);
  let backup: NodeProcess = await cluster.start("B0", "backup", ["--connect", primary.url]);
  const client = new ConsoleClient({ urls: [primary.url, backup.url], token });
  let out = "";
  client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
  client.start();
  const durable = () => [...out.matchAll(/durable(\d+)\r\n/g)].map((m) => Number(m[1]));
  const waitOut = (re: RegExp, ms: number) => until(() => re.test(out), ms, () => `${re}; output tail ${JSON.stringify(out.slice(-300))}`);
  try {
    await waitOut(/lockstep:\/root# /, 90_000);
    client.send(Buffer.from("(i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo rec$i >> /mnt/records; sync; echo durable$i; usleep 50000; done; echo writer''-stopped) &\r"));
    for (let k = 0; k < kills; k++) {
      await until(async () => (await primary.status()).protected === true, 60_000, () => `round ${k}: ${backup.name} to protect ${primary.name}; ${backup.name}: ${backup.stderr.slice(-1500)}\n${primary.name}: ${primary.stderr.slice(-1500)}`);
      const target = (durable().at(-1) ?? 0) + 2 + Math.floor(Math.random() * 10);
      await until(() => (durable().at(-1) ?? 0) >= target, 60_000, () => `round ${k}: record ${target}; tail ${JSON.stringify(out.slice(-200))}`);
      await sleep(Math.random() * 60); // anywhere in a record's write, sync or report
      primary.kill("SIGKILL");
      await backup.waitEvent("live", 15_000);
      primary = backup;
      backup = await cluster.start(`B${k + 1}`, "backup", ["--connect", primary.url]);
      client.addUrl(backup.url);
    }
    const seenBefore = durable().at(-1) ?? 0;
    await until(() => (durable().at(-1) ?? 0) >= seenBefore + 3, 30_000, () => "records after the last takeover");
    client.send(Buffer.from("touch /tmp/stop\r"));
    await waitOut(/writer-stopped/, 30_000);
    client.send(Buffer.from("umount /mnt; echo umount-status-$?\r"));
    await waitOut(/umount-status-0/, 30_000);
  } finally {
    client.close();
    for (const n of cluster.nodes) n.kill("SIGKILL");
    for (const s of servers.splice(0)) s.kill("SIGKILL");
  }
  // the console saw every record reported once, in order
  const seen = durable();
  seen.forEach((n, i) => expect(n, `durable line ${i}`).toBe(i + 1));
  expect(seen.length).toBeGreaterThan(kills * 2);
  // the shared disk is clean and holds every record reported durable
  const fsck = spawnSync("e2fsck", ["-fn", diskPath], { encoding: "utf8" });
  expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
  const cat = spawnSync("debugfs", ["-R", "cat /records", diskPath], { encoding: "utf8" });
  const records = cat.stdout.split("\n").filter(Boolean);
  expect(records.length).toBeGreaterThanOrEqual(seen.length);
  records.forEach((r, i) => expect(r, `record line ${i}`).toBe(`rec${i + 1}`));
}

