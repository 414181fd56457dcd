/**
 * `npm run soak:join` (SOAK_MINUTES, default 10): a backup joins a running linux primary from a
 * checkpoint while the guest computes and writes to its disk, then follows it for SOAK_MINUTES of
 * guest time, verifying the primary's state digest every 1000 slices. Prints a JSON line; exit
 * status 1 if the backup diverged (it halts) or fell out of protection.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { packageRoot } from "../emulator/package-root.js";
import { ConsoleClient } from "../ft/runtime/console-client.js";
import { until } from "../ft/runtime/until.js";

const minutes = Number(process.env.SOAK_MINUTES ?? 10);
const cli = join(packageRoot(), "dist", "ft", "cli", "main.js");
const token = "soak-token-0123456";
const dir = mkdtempSync(join(tmpdir(), "lockstep-soak-"));
const children: ChildProcess[] = [];

const freePort = () =>
  new Promise<number>((resolve) => {
    const s = createServer();
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });

async function start(role: string, name: string, extra: string[]): Promise<number> {
  const port = await freePort();
  const child = spawn(process.execPath, [cli, role, "--listen", `127.0.0.1:${port}`, "--shared-dir", dir, "--token", token, "--node-id", name, ...extra], { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, LOCKSTEP_LOG_LEVEL: "warn" } });
  children.push(child);
  await new Promise<void>((resolve) => createInterface({ input: child.stdout! }).on("line", (l) => l.includes('"listening"') && resolve()));
  return port;
}
const status = async (port: number) => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Record<string, any>;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

try {
  const a = await start("primary", "A", ["--image", "linux"]);
  const client = new ConsoleClient({ urls: [`ws://127.0.0.1:${a}`], token });
  let out = "";
  client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
  client.start();
  await until(() => /lockstep:\/root# /.test(out), 300_000, "the prompt");
  client.send(Buffer.from("(while true; do i=0; while [ $i -lt 20 ]; do seq 1 3000 > /mnt/s$i; sync; i=$((i+1)); done; done) & (while true; do :; done) &\r"));
  await sleep(3000);
  const b = await start("backup", "B", ["--connect", `ws://127.0.0.1:${a}`, "--join"]);
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
  process.stdout.write(JSON.stringify({ ok, minutes, guestMs: p.guestMs - joinedAt.guestMs, primarySlice: p.slice, backupSlice: s.slice, digestsVerified: s.digestsVerified, lastJoin: p.lastJoin, disk: p.disk }) + "\n");
  process.exitCode = ok ? 0 : 1;
} finally {
  for (const c of children) c.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
