// Disk backend errors: a missing disk or a read-only export is refused with a clear error; an NBD
// server that goes away mid-run pauses the guest with a clear log line and loses no write — the
// guest goes on when the server is back.
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { until } from "../../ft/runtime/until.js";
import { runCli } from "../support/cli.js";
import { TestCluster, token } from "../support/cluster.js";

const cluster = new TestCluster();
const servers: ChildProcess[] = [];
afterAll(async () => {
  for (const s of servers) s.kill("SIGKILL");
  await cluster.stop();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function nbdkit(socket: string, file: string, extra: string[] = []): Promise<ChildProcess> {
  rmSync(socket, { force: true });
  const child = spawn("nbdkit", ["--foreground", "--exit-with-parent", "--unix", socket, ...extra, "file", `file=${file}`], { stdio: "ignore" });
  servers.push(child);
  await until(() => existsSync(socket), 10_000, () => "nbdkit's socket");
  return child;
}

const primaryArgs = (disk: string) => ["primary", "--listen", "127.0.0.1:0", "--shared-dir", join(cluster.dir, "arb"), "--token", token, "--peer-token", `${token}-peer`, "--image", "linux", "--disk", disk];

describe("disk backend errors", () => {
  it("a missing disk, and a read-only NBD export, are refused with a stable code", async () => {
    const missing = runCli(primaryArgs(join(cluster.dir, "absent.img")));
    expect(missing.status).toBe(2);
    expect(missing.stderr).toMatch(/LOCKSTEP_ERR_DISK_UNREADABLE: Disk .*absent\.img cannot be read: ENOENT/);
    const file = join(cluster.dir, "ro.img");
    writeFileSync(file, makeBlankDisk({ sizeMiB: 16, format: "ext2" }));
    const socket = join(cluster.dir, "ro.sock");
    await nbdkit(socket, file, ["--readonly"]);
    const ro = runCli(primaryArgs(`nbd+unix:///?socket=${socket}`));
    expect(ro.status).toBe(2);
    expect(ro.stderr).toMatch(/LOCKSTEP_ERR_DISK_UNWRITABLE: NBD disk .* is read-only/);
    const gone = runCli(primaryArgs(`nbd+unix:///?socket=${join(cluster.dir, "nobody.sock")}`));
    expect(gone.status).toBe(2);
    expect(gone.stderr).toMatch(/LOCKSTEP_ERR_DISK_UNREADABLE: NBD disk .* cannot be opened: ENOENT/);
    expect(gone.stderr).not.toMatch(/\n\s+at /);
    // an export to boot from (--hda) without a boot sector: refused once the primary has read it
    const blank = join(cluster.dir, "blank.img");
    writeFileSync(blank, new Uint8Array(2 ** 20));
    const blankSocket = join(cluster.dir, "blank.sock");
    await nbdkit(blankSocket, blank);
    const args = primaryArgs("unused").slice(0, -4);
    const boot = runCli([...args, "--hda", `nbd+unix:///?socket=${blankSocket}`]);
    expect(boot.status, boot.stderr).toBe(2);
    expect(boot.stderr).toMatch(/LOCKSTEP_ERR_DISK_NOT_BOOTABLE: nbd\+unix:.* is not bootable/);
  });

  it("the NBD server going away pauses the guest with a log line; nothing is lost when it returns", async () => {
    const file = join(cluster.dir, "shared.img");
    writeFileSync(file, makeBlankDisk({ sizeMiB: 16, format: "ext2" }));
    const socket = join(cluster.dir, "nbd.sock");
    let server = await nbdkit(socket, file);
    const p = await cluster.start("P", "primary", ["--image", "linux", "--disk", `nbd+unix:///?socket=${socket}`]);
    const client = new ConsoleClient({ urls: [p.url], token });
    let out = "";
    client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    client.start();
    const durable = () => [...out.matchAll(/durable(\d+)\r\n/g)].map((m) => Number(m[1]));
    const last = () => durable().at(-1) ?? 0;
    try {
      await until(() => /lockstep:\/root# /.test(out), 90_000, () => "the prompt");
      client.send(Buffer.from("(i=0; while [ ! -e /tmp/stop ]; do i=$((i+1)); echo rec$i >> /mnt/records; sync; echo durable$i; usleep 20000; done; echo writer''-stopped) &\r"));
      await until(() => last() >= 5, 30_000, () => "records");
      server.kill("SIGKILL");
      await until(() => /disk backend failing: the guest is paused/.test(p.stderr), 15_000, () => `the log line; stderr tail ${p.stderr.slice(-500)}`);
      const stalledAt = last();
      await sleep(1500);
      expect(last() - stalledAt).toBeLessThanOrEqual(1); // at most the record whose sync was already done
      server = await nbdkit(socket, file);
      await until(() => /disk backend works again/.test(p.stderr), 15_000, () => "recovery");
      await until(() => last() >= stalledAt + 5, 30_000, () => "records after recovery");
      client.send(Buffer.from("touch /tmp/stop\r"));
      await until(() => /writer-stopped/.test(out), 30_000, () => "the writer to stop");
      client.send(Buffer.from("umount /mnt; echo umount-status-$?\r"));
      await until(() => /umount-status-0/.test(out), 30_000, () => "umount");
    } finally {
      client.close();
      p.kill("SIGKILL");
      server.kill("SIGKILL");
    }
    const seen = durable();
    seen.forEach((n, i) => expect(n).toBe(i + 1));
    const fsck = spawnSync("e2fsck", ["-fn", file], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    const records = spawnSync("debugfs", ["-R", "cat /records", file], { encoding: "utf8" }).stdout.split("\n").filter(Boolean);
    expect(records.length).toBeGreaterThanOrEqual(seen.length);
    records.forEach((r, i) => expect(r).toBe(`rec${i + 1}`));
  }, 180_000);
});
