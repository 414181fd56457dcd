// The shared disk is fenced against an old primary, with real processes: the guest writes the
// same blocks in a tight loop with sync; the primary is stopped (SIGSTOP) with writes in flight,
// the backup takes over and the guest, now on it, overwrites those blocks; then the old primary
// wakes (SIGCONT). It must halt without touching the disk: the file holds the new primary's data,
// seen by the guest after dropping its caches and, after unmounting, by debugfs; e2fsck is clean.
// (What fences it: the disk lease — a protected primary starts a write only while its backup
// cannot have gone live, checked in the same synchronous step as the pwrite.)
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { until as poll } from "../../ft/runtime/until.js";
import { TestCluster, token } from "../support/cluster.js";

const cluster = new TestCluster();
afterAll(() => cluster.stop());
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("disk fencing", () => {
  it("a primary stopped with writes in flight and woken after a takeover halts and never overwrites the new primary's data", async () => {
    const a = await cluster.start("A", "primary", ["--image", "linux"]);
    const b = await cluster.start("B", "backup", ["--connect", a.url]);
    const client = new ConsoleClient({ urls: [a.url, b.url], token });
    let out = "";
    client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    client.start();
    const until = (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string) => poll(check, timeoutMs, () => `${what}; output tail ${JSON.stringify(out.slice(-300))}`);
    try {
      await until(() => /lockstep:\/root# /.test(out), 90_000, "the prompt");
      await until(async () => (await a.status()).protected === true, 30_000, "B to protect A");
      // several blocks per round (the file and its metadata), with sync: writes are held or running most of the time
      client.send(Buffer.from("(i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo old$i > /mnt/fence; seq $i $((i+3000)) > /mnt/bulk; sync; done; echo loop''-stopped) &\r"));
      await until(async () => ((await a.status()) as { disk: { writes: number } }).disk.writes >= 50, 30_000, "the guest writing");
      // stop it while writes are issued or held (a tight loop of write + sync keeps some in flight)
      let stoppedWith = 0;
      for (let i = 0; i < 1000 && stoppedWith === 0; i++) {
        stoppedWith = ((await a.status()) as { disk: { outstanding: number } }).disk.outstanding;
        if (stoppedWith === 0) await sleep(2);
      }
      a.kill("SIGSTOP");
      await b.waitEvent("live", 15_000);
      client.send(Buffer.from("touch /tmp/stop\r"));
      await until(() => /loop-stopped/.test(out), 30_000, "the writer loop to stop on the new primary");
      client.send(Buffer.from("echo new > /mnt/fence; sync; echo new''-written\r"));
      await until(() => /new-written/.test(out), 30_000, "the new primary's write");
      a.kill("SIGCONT");
      const halted = await a.waitEvent("halted", 20_000);
      expect(String(halted.reason)).toMatch(/epoch/);
      await sleep(500); // anything the old primary still wrote would have landed by now
      client.send(Buffer.from("echo 3 > /proc/sys/vm/drop_caches; echo \"fence=$(cat /mnt/fence)\"; umount /mnt; echo umount-status-$?\r"));
      await until(() => /umount-status-0/.test(out), 30_000, "unmount");
      expect(out).toMatch(/fence=new\r/);
      expect(stoppedWith, "writes were held or in flight when the primary stopped").toBeGreaterThan(0);
    } finally {
      client.close();
      a.kill("SIGCONT");
      for (const n of cluster.nodes) n.kill("SIGKILL");
    }
    const disk = join(cluster.dir, "disk-linux.img");
    const fsck = spawnSync("e2fsck", ["-fn", disk], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    expect(spawnSync("debugfs", ["-R", "cat /fence", disk], { encoding: "utf8" }).stdout).toBe("new\n");
  }, 180_000);
});
