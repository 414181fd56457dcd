/**
 * `npm run soak:join` (SOAK_MINUTES, default 10): a backup joins a running linux primary from a
 * checkpoint while the guest computes and writes to its disk, then follows it for SOAK_MINUTES of
 * guest time, verifying the primary's state digest every 1000 slices. Prints a JSON line (with the
 * join: the checkpoint's capture pause, how long until protected and how long the guest was held
 * meanwhile); exit status 1 if the backup diverged (it halts) or fell out of protection.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleClient } from "../ft/runtime/console-client.js";
import { NodeProcess, type NodeRole } from "../ft/runtime/node-process.js";
import { until } from "../ft/runtime/until.js";

const minutes = Number(process.env.SOAK_MINUTES ?? 10);
const token = "soak-token-0123456";
const dir = mkdtempSync(join(tmpdir(), "lockstep-soak-"));
const nodes: NodeProcess[] = [];

async function start(role: NodeRole, name: string, args: string[]): Promise<NodeProcess> {
  const node = await NodeProcess.start({ role, name, sharedDir: dir, token, args, logLevel: "warn", stderr: "inherit" });
  nodes.push(node);
  return node;
}
const status = (node: NodeProcess) => node.status<Record<string, any>>(10_000);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

try {
  const a = await start("primary", "A", ["--image", "linux"]);
  const client = new ConsoleClient({ urls: [a.url], token });
  let out = "";
  client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
  client.start();
  await until(() => /lockstep:\/root# /.test(out), 300_000, "the prompt");
  client.send(Buffer.from("(while true; do i=0; while [ $i -lt 20 ]; do seq 1 3000 > /mnt/s$i; sync; i=$((i+1)); done; done) & (while true; do :; done) &\r"));
  await sleep(3000);
  const b = await start("backup", "B", ["--connect", a.url, "--join"]);
  await until(async () => (await status(a)).protected === true, 600_000, "the joined backup to protect the primary", 100);
  const joinedAt = await status(a);
  process.stderr.write(`joined at slice ${joinedAt.slice}; following for ${minutes} min of guest time\n`);
  const endGuestMs = joinedAt.guestMs + minutes * 60_000;
  let ok = true;
  for (;;) {
    await sleep(5000);
    const [p, s] = [await status(a), await status(b).catch(() => ({ role: "gone" }) as Record<string, any>)];
    if (s.role !== "backup" || p.protected !== true) {
      ok = false;
      process.stderr.write(`backup ${s.role}: ${s.haltReason ?? ""}; primary protected=${p.protected}\n`);
      break;
    }
    if (p.guestMs >= endGuestMs) break;
  }
  const [p, s] = [await status(a), await status(b)];
  client.close();
  process.stdout.write(JSON.stringify({ ok, minutes, guestMs: p.guestMs - joinedAt.guestMs, primarySlice: p.slice, backupSlice: s.slice, digestsVerified: s.digestsVerified, lastJoin: p.lastJoin, joinProtectedMs: p.lastJoinProtectedMs, joinGuestHeldMs: p.lastJoinGuestHeldMs, disk: p.disk }) + "\n");
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const n of nodes) n.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
