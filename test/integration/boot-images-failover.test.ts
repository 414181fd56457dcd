// The user's own images in a protected pair: a bootable ISO (both nodes hold the same file) and a
// bootable hard disk image (the pair's shared disk, booted through SeaBIOS from it). SIGKILL of the
// primary: the backup takes over, the console's counter lines arrive once and in order; on the disk
// image the records synced before the kill are on the disk and e2fsck finds its partition clean. A
// backup given another ISO than the primary's is refused with a clear error, and the primary goes on.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { until as poll } from "../../ft/runtime/until.js";
import { TestCluster, token } from "../support/cluster.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-boot-pair-test-"));
const iso = join(dir, "boot.iso");
const disk = join(dir, "boot-disk.img");
const clusters: TestCluster[] = [];
const clients: ConsoleClient[] = [];
afterAll(async () => {
  for (const c of clients) c.close();
  for (const c of clusters) await c.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeAll(() => {
  const r = spawnSync("bash", [join(packageRoot(), "scripts", "build-boot-images.sh"), dir], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`build-boot-images.sh failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
}, 120_000);

/** A pair booting `media`, a console following it, the guest counting; SIGKILL of the primary mid-count. */
async function killDuringCount(primaryArgs: string[], backupArgs: string[], beforeKill: (send: (line: string) => void, until: (re: RegExp, what: string) => Promise<void>) => Promise<void>) {
  const cluster = new TestCluster();
  clusters.push(cluster);
  const a = await cluster.start("A", "primary", primaryArgs);
  const b = await cluster.start("B", "backup", ["--connect", a.url, ...backupArgs]);
  const client = new ConsoleClient({ urls: [a.url, b.url], token });
  clients.push(client);
  let out = "";
  client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
  client.start();
  const until = (re: RegExp, what: string, timeoutMs = 120_000) => poll(() => re.test(out), timeoutMs, () => `${what}; output tail ${JSON.stringify(out.slice(-400))}`);
  const send = (line: string) => client.send(Buffer.from(line + "\r"));
  const counters = () => [...out.matchAll(/^n(\d+)\r$/gm)].map((m) => Number(m[1]));
  await until(/lockstep:\/root# /, "the prompt", 240_000);
  await poll(async () => (await a.status()).protected === true, 120_000, () => `B to protect A; B: ${b.stderr.slice(-2000)}`);
  await beforeKill(send, (re, what) => until(re, what));
  send("i=0; while [ $i -lt 300 ]; do echo n$i; i=$((i+1)); usleep 20000; done; echo count-'done'");
  await poll(() => (counters().at(-1) ?? 0) >= 40, 60_000, "counting");
  a.kill("SIGKILL");
  await b.waitEvent("live", 15_000);
  await until(/count-done/, "the count to end on the new primary");
  expect(counters()).toEqual(Array.from({ length: 300 }, (_, i) => i));
  return { cluster, b, out: () => out, send, until };
}

describe("the user's images in a pair", () => {
  it("an ISO: the backup holds the same file, takes over at SIGKILL, nothing lost or repeated; a new backup joins from a checkpoint", async () => {
    const { cluster, b, send, until } = await killDuringCount(["--cdrom", iso], ["--cdrom", iso], async () => {});
    // a checkpoint of a machine with a CD (the CD itself is not in it: the new backup holds the file)
    const c = await cluster.start("C", "backup", ["--connect", b.url, "--join", "--cdrom", iso]);
    await poll(async () => (await b.status()).protected === true, 120_000, () => `C to protect B; C: ${c.stderr.slice(-2000)}`);
    expect(c.stderr).toMatch(/checkpoint received: following the log from there/);
    send("echo joined-'ok'");
    await until(/joined-ok/, "an answer from the protected pair");
  }, 400_000);

  it("a bootable disk image as the shared disk: takeover, synced records on the disk, e2fsck clean", async () => {
    const { b, send, until } = await killDuringCount(["--hda", disk], [], async (send, until) => {
      // the image's ext2 partition (the boot loader's own) holds the records
      send("mount -t ext2 /dev/sda1 /mnt && for r in 1 2 3 4 5; do echo record-$r-synced >> /mnt/records.txt; sync; done; echo write-'done'");
      await until(/write-done/, "the records written and synced");
    });
    send("echo after-takeover >> /mnt/records.txt; sync; umount /mnt; echo umount-$?");
    await until(/umount-0/, "the unmount on the new primary");
    b.kill("SIGKILL");
    // the partition from 1 MiB: copied out for e2fsck
    const part = join(dir, "partition.ext2");
    writeFileSync(part, readFileSync(disk).subarray(2048 * 512));
    const fsck = spawnSync("e2fsck", ["-fn", part], { encoding: "utf8" });
    expect(fsck.status, fsck.stdout + fsck.stderr).toBe(0);
    const text = readFileSync(part).toString("latin1");
    for (let r = 1; r <= 5; r++) expect(text).toContain(`record-${r}-synced\n`);
    expect(text).toContain("after-takeover\n");
  }, 400_000);

  it("refuses a backup that holds another ISO than the primary's, with a clear error; the primary goes on", async () => {
    const cluster = new TestCluster();
    clusters.push(cluster);
    const other = join(dir, "other.iso");
    copyFileSync(iso, other);
    const bytes = readFileSync(other);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
    writeFileSync(other, bytes);
    const a = await cluster.start("A", "primary", ["--cdrom", iso]);
    const b = await cluster.start("B", "backup", ["--connect", a.url, "--cdrom", other]);
    const code = await b.waitExit(60_000);
    expect(code).not.toBe(0);
    expect(b.stderr).toMatch(/LOCKSTEP_ERR_LOG_MISMATCH/);
    expect(b.stderr).toMatch(/sha256 of cdrom/);
    // the backup hashed the ISO (without blocking) before it found the mismatch: it may have
    // acknowledged the log meanwhile, so the primary sees it gone after the failure timeout
    await poll(async () => (await a.status()).protected === false, 10_000, "the primary to go on unprotected");
    expect((await a.status()).role).toBe("primary");
  }, 120_000);
});
