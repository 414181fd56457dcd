// Booting the user's own images through SeaBIOS: a bootable hard disk (MBR + extlinux) and a
// bootable ISO (isolinux), built from Debian's boot loaders and the bundled kernel by
// scripts/build-boot-images.sh. Each boots to the serial shell under `lockstep record`, and the
// recording replays offline with identical digests and output (the CD's reads are not in the log:
// they are a function of the guest's execution). A CD and a hard disk at once (either boots), an ISO
// larger than a buffer can hold, a CD ejected before a checkpoint. Bad input: an ISO that is not
// one, an ISO without a boot record, a disk without a boot sector, a replay with another ISO.
import { spawnSync } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { decodeCheckpoint, encodeCheckpoint, sessionFromCheckpoint } from "../../hypervisor/checkpoint.js";
import { LogReader } from "../../hypervisor/log-file.js";
import { GuestDriver } from "../support/guest-driver.js";
import { runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-boot-test-"));
const iso = join(dir, "boot.iso");
const disk = join(dir, "boot-disk.img");
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const session = (tag: string) =>
  [
    `wait "lockstep:/root# " 240`,
    `sendline "uname -r; cat /proc/cmdline; echo '${tag}'-done"`,
    `wait "${tag}-done"`,
  ].join("\n") + "\n";

function errorCode(stderr: string): string | undefined {
  return /LOCKSTEP_ERR_[A-Z_]+/.exec(stderr)?.[0];
}

describe("booting the user's images through the BIOS", () => {
  beforeAll(() => {
    const r = spawnSync("bash", [join(packageRoot(), "scripts", "build-boot-images.sh"), dir], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`build-boot-images.sh failed (${r.status}):\n${r.stdout}\n${r.stderr}`);
  }, 120_000);

  for (const kind of ["cdrom", "hda"] as const) {
    it(`boots the ${kind === "cdrom" ? "ISO" : "hard disk image"} to the serial shell, records and replays it identically`, () => {
      const log = join(dir, `${kind}.lslog`);
      const script = join(dir, `${kind}.script`);
      writeFileSync(script, session(kind));
      const media = kind === "cdrom" ? ["--cdrom", iso] : ["--hda", disk];
      const rec = runCli(["record", "--out", log, ...media, "--input", script, "--fast", "--force"], { timeoutMs: 300_000 });
      expect(rec.status, rec.stderr).toBe(0);
      const header = new LogReader(log).header;
      expect(header.machine.kind).toBe("bios");
      expect(header.machine.boot).toBe(kind === "cdrom" ? "cdrom" : "disk");
      if (kind === "cdrom") {
        expect(header.machine.files.cdrom?.sha256).toMatch(/^[0-9a-f]{64}$/);
        // the CD's data is not in the log: the whole recording is far smaller than the kernel and initramfs it read
        expect(statSync(log).size).toBeLessThan(statSync(iso).size / 4);
        console.log(`ISO boot: log ${statSync(log).size} bytes for a ${statSync(iso).size}-byte ISO`);
      } else console.log(`disk boot: log ${statSync(log).size} bytes (every disk read's data is in it)`);
      const cd = kind === "cdrom" ? ["--cdrom", iso] : [];
      const replay = runCli(["replay", log, "--json", ...cd], { timeoutMs: 300_000 });
      expect(replay.status, replay.stderr).toBe(0);
      const report = JSON.parse(replay.stdout) as { digestsChecked: number; complete: boolean };
      expect(report.complete).toBe(true);
      expect(report.digestsChecked).toBeGreaterThan(0);
      // the serial output it reproduces: the boot through the BIOS and the session's answers
      const serial = runCli(["replay", log, ...cd], { timeoutMs: 300_000 });
      expect(serial.status, serial.stderr).toBe(0);
      expect(serial.stdout).toMatch(new RegExp(`\\r\\n${kind}-done\\r\\n`));
      // the boot loader (isolinux, extlinux) started the kernel, not v86's direct kernel boot
      expect(serial.stdout).toMatch(/BOOT_IMAGE=\/boot\/bzImage/);
    }, 600_000);
  }

  it("boots the CD with a hard disk attached (its kernel sees the disk), and the hard disk with the CD attached (a replay must be given the CD)", () => {
    // the CD boots, the disk is the guest's sda
    const cdLog = join(dir, "cd-and-disk.lslog");
    const cdScript = join(dir, "cd-and-disk.script");
    writeFileSync(cdScript, [`wait "lockstep:/root# " 240`, `sendline "grep -c ' sda$' /proc/partitions; echo 'both'-done"`, `wait "both-done"`].join("\n") + "\n");
    const diskCopy = join(dir, "attached-disk.img");
    copyFileSync(disk, diskCopy);
    const cd = runCli(["record", "--out", cdLog, "--cdrom", iso, "--hda", diskCopy, "--input", cdScript, "--fast", "--force"], { timeoutMs: 300_000 });
    expect(cd.status, cd.stderr).toBe(0);
    expect(cd.stdout.slice(-400)).toMatch(/\r\n1\r\nboth-done/); // (the recording may stop before the line ends)
    expect(new LogReader(cdLog).header.machine.boot).toBe("cdrom");

    // the disk boots (extlinux), the CD stays in
    const log = join(dir, "disk-and-cd.lslog");
    const script = join(dir, "disk-and-cd.script");
    writeFileSync(script, session("disk-with-cd"));
    const rec = runCli(["record", "--out", log, "--hda", diskCopy, "--cdrom", iso, "--boot", "disk", "--input", script, "--fast", "--force"], { timeoutMs: 300_000 });
    expect(rec.status, rec.stderr).toBe(0);
    const header = new LogReader(log).header;
    expect([header.machine.boot, header.machine.files.cdrom?.sha256]).toEqual(["disk", expect.stringMatching(/^[0-9a-f]{64}$/)]);
    expect(runCli(["images", "hda+cdrom:" + iso]).stdout).toMatch(/SeaBIOS from the hard disk \(the shared disk\), the CD boot\.iso attached/);
    const without = runCli(["replay", log]);
    expect(errorCode(without.stderr)).toBe("LOCKSTEP_ERR_IMAGE_UNKNOWN");
    expect(without.stderr).toMatch(/has a CD attached.*--cdrom/s);
    const replay = runCli(["replay", log, "--cdrom", iso], { timeoutMs: 300_000 });
    expect(replay.status, replay.stderr).toBe(0);
    expect(replay.stdout).toMatch(/\r\ndisk-with-cd-done\r\n/);
    expect(replay.stdout).toMatch(/BOOT_IMAGE=\/boot\/bzImage/);
  }, 600_000);

  it("boots an ISO larger than a buffer can hold (3 GiB, sparse): the CD is read from its file, never whole", () => {
    const big = join(dir, "big.iso");
    copyFileSync(iso, big);
    truncateSync(big, 3 * 2 ** 30);
    const log = join(dir, "big.lslog");
    const script = join(dir, "big.script");
    writeFileSync(script, session("big"));
    const rec = runCli(["record", "--out", log, "--cdrom", big, "--input", script, "--fast", "--force"], { timeoutMs: 300_000 });
    expect(rec.status, rec.stderr).toBe(0);
    expect(rec.stdout).toMatch(/big-done/);
    const replay = runCli(["replay", log, "--json", "--cdrom", big], { timeoutMs: 300_000 });
    expect(replay.status, replay.stderr).toBe(0);
    rmSync(big);
  }, 600_000);

  it("a machine whose CD was ejected is restored from a checkpoint without it (v86 kept the medium it was built with)", async () => {
    const a = await GuestDriver.boot({ image: `cdrom:${iso}`, disk: "none" });
    const cd = (m: unknown) => (m as { cpu: { devices: { cdrom: { buffer: unknown; eject(): void } } } }).cpu.devices.cdrom;
    try {
      a.runSlices(200);
      cd(a.session.machine).eject(); // as the guest's START STOP UNIT does
      a.runSlices(5);
      const cp = a.recorder.checkpoint();
      expect(cp).toBeDefined();
      const b = await sessionFromCheckpoint({ loaded: a.loaded, clock: a.session.clock.params }, await decodeCheckpoint(await encodeCheckpoint(cp!)));
      try {
        expect(cd(b.machine).buffer).toBeNull();
        expect(b.machine.digest()).toBe(a.session.machine.digest());
      } finally {
        b.close();
      }
    } finally {
      a.close();
    }
  }, 120_000);

  it("refuses a file that is not an ISO, an ISO that does not boot, a disk without a boot sector and another ISO at replay", () => {
    const notIso = join(dir, "not.iso");
    writeFileSync(notIso, Buffer.alloc(64 * 2048, 7));
    expect(errorCode(runCli(["run", "--cdrom", notIso]).stderr)).toBe("LOCKSTEP_ERR_ISO_INVALID");

    // an ISO 9660 image without the El Torito boot record: the same volume, its boot record blanked
    const noBoot = join(dir, "noboot.iso");
    copyFileSync(iso, noBoot);
    const bytes = readFileSync(noBoot);
    for (let s = 17; s < 32; s++) if (bytes.toString("latin1", s * 2048 + 7, s * 2048 + 30) === "EL TORITO SPECIFICATION") bytes.fill(0, s * 2048 + 7, s * 2048 + 30);
    writeFileSync(noBoot, bytes);
    expect(errorCode(runCli(["run", "--cdrom", noBoot]).stderr)).toBe("LOCKSTEP_ERR_ISO_INVALID");

    const blank = join(dir, "blank.img");
    writeFileSync(blank, Buffer.alloc(1 << 20));
    expect(errorCode(runCli(["run", "--hda", blank]).stderr)).toBe("LOCKSTEP_ERR_DISK_NOT_BOOTABLE");

    // a replay given another ISO than the one recorded
    const other = join(dir, "other.iso");
    const changed = readFileSync(iso);
    changed[changed.length - 1] = changed[changed.length - 1]! ^ 1;
    writeFileSync(other, changed);
    const r = runCli(["replay", join(dir, "cdrom.lslog"), "--cdrom", other]);
    expect(errorCode(r.stderr)).toBe("LOCKSTEP_ERR_LOG_MISMATCH");
    expect(r.stderr).toMatch(/sha256 of cdrom/);
    // and without one: it says what to pass
    const none = runCli(["replay", join(dir, "cdrom.lslog")]);
    expect(errorCode(none.stderr)).toBe("LOCKSTEP_ERR_IMAGE_UNKNOWN");
    expect(none.stderr).toMatch(/--cdrom ISO/);
  });
});
