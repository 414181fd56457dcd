/**
 * Booting the user's own image without writing a machine config: `--hda FILE` (a bootable hard disk
 * image, which is then the guest's disk: the shared disk of a pair), `--cdrom ISO` (a CD attached
 * read-only) and `--boot disk|cdrom|kernel` (what SeaBIOS starts; default: the CD if one is given,
 * else the hard disk if one is given, else the image's kernel). Both a CD and a hard disk may be
 * given (an installer CD and the disk it installs to). They turn into the image names that
 * `loadMachine` understands (`cdrom:PATH`, `hda`, `hda+cdrom:PATH`) and the disk to attach.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { resolve } from "node:path";
import { Command, Option } from "commander";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { checkBootSector } from "../../emulator/machine-config.js";

export interface BootFlags {
  image?: string;
  disk?: string;
  hda?: string;
  cdrom?: string;
  boot?: "disk" | "cdrom" | "kernel";
}

/** Adds --hda, --cdrom and --boot to a command that boots a machine. */
export function bootFlags(cmd: Command): Command {
  return cmd
    .option("--hda <file>", "a bootable hard disk image (MBR and boot loader): the guest's disk, booted through SeaBIOS (same as --disk FILE --boot disk)")
    .option("--cdrom <iso>", "a CD image, attached read-only and booted through SeaBIOS (every node of a pair needs the same file)")
    .addOption(new Option("--boot <device>", "what SeaBIOS boots: disk, cdrom, or kernel (the image's own kernel; default: cdrom if --cdrom, else disk if --hda, else kernel)").choices(["disk", "cdrom", "kernel"]));
}

const usage = (message: string, hint?: string) => new LockstepError(ErrorCode.usage, message, hint);

/** Turns the boot flags into `image` and `disk` (in place); checks that a disk to boot has a boot sector. `imageGiven`: --image was on the command line. */
export function applyBootFlags<T extends BootFlags>(o: T, imageGiven = false): T {
  if (imageGiven && (o.hda !== undefined || o.cdrom !== undefined) && o.boot !== "kernel") throw usage("--image and --hda/--cdrom both say what to boot", "use one of them (or --boot kernel)");
  if (o.hda !== undefined && o.disk !== undefined) throw usage("--hda and --disk both name the guest's disk", "use one of them");
  if (o.hda !== undefined) o.disk = o.hda;
  const boot = o.boot ?? (o.cdrom !== undefined ? "cdrom" : o.hda !== undefined ? "disk" : "kernel");
  if (boot === "cdrom") {
    if (o.cdrom === undefined) throw usage("--boot cdrom needs --cdrom ISO");
    o.image = `cdrom:${resolve(o.cdrom)}`;
  } else if (boot === "disk") {
    if (o.disk === undefined) throw usage("--boot disk needs --hda FILE (or --disk)");
    // a file is checked here; an NBD export (nbd://, nbd+unix://) when the primary opens it
    if (!/^nbd/.test(o.disk)) checkBootSector(o.disk, firstSector(o.disk));
    // a CD may stay attached while the hard disk boots
    o.image = o.cdrom !== undefined ? `hda+cdrom:${resolve(o.cdrom)}` : "hda";
  } else if (o.cdrom !== undefined) {
    throw usage("--cdrom with --boot kernel: the image's own kernel has no CD", "use --boot cdrom or --boot disk, or leave out --cdrom");
  }
  return o;
}

function firstSector(path: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, "r");
    if (!fstatSync(fd).isFile()) {
      closeSync(fd);
      throw new Error("not a file");
    }
  } catch (e) {
    throw new LockstepError(ErrorCode.diskUnreadable, `Disk ${path} cannot be read: ${(e as Error).message}`);
  }
  try {
    const b = new Uint8Array(512);
    readSync(fd, b, 0, 512, 0);
    return b;
  } finally {
    closeSync(fd);
  }
}
