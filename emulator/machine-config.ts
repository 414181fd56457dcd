/**
 * Machine configs: what a guest is made of (boot files with their sha256, memory, kernel command
 * line, disk geometry) and how to load and check one. A config is a small JSON file; the bundled
 * guests live in disk-images/<name>/machine.json. Loading verifies every file's sha256, so a run can
 * never silently boot something other than what its config (and a log header) names.
 */
import { createHash } from "node:crypto";
import { closeSync, createReadStream, existsSync, openSync, readFileSync, readSync, readdirSync, statSync } from "node:fs";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { ErrorCode, LockstepError } from "./lockstep-error.js";
import { bundledImagesDir } from "./package-root.js";

/** multiboot: a kernel without a BIOS; linux: a bzImage (and initrd) through SeaBIOS; bios: SeaBIOS boots a disk or a CD. */
export type MachineKind = "multiboot" | "linux" | "bios";
export const fileRoles = ["bios", "vgaBios", "multiboot", "bzimage", "initrd", "cdrom"] as const;
/** What a "bios" machine boots from: its hard disk (the shared disk) or its CD (files.cdrom). */
export type BootDevice = "disk" | "cdrom";
export type FileRole = (typeof fileRoles)[number];

export interface FileRef {
  /** Relative to the config file, or absolute. */
  path: string;
  sha256: string;
}

export interface DiskSpec {
  /** Size of a fresh disk made when the user names none. */
  sizeMiB: number;
  /** "ext2": a fresh disk is an empty ext2 filesystem; "raw": zeros. */
  format: "ext2" | "raw";
}

/** The guest's network card: v86's ne2k (PCI), with a MAC fixed by the config (not drawn at random). */
export interface NicSpec {
  type: "ne2k";
  /** Six hex bytes, colon-separated; a unicast address. */
  mac: string;
}

export interface MachineConfig {
  name: string;
  description: string;
  kind: MachineKind;
  /** A "bios" machine: the device SeaBIOS boots first. */
  boot?: BootDevice;
  memoryMiB: number;
  cmdline?: string;
  files: Partial<Record<FileRole, FileRef>>;
  disk?: DiskSpec;
  nic?: NicSpec;
}

/** A config with its files read and verified, ready to boot. */
export interface LoadedMachine {
  config: MachineConfig;
  /** Where the config came from (a bundled name or a file path). */
  source: string;
  /** The files it boots, read (the CD is not: see `cdrom`). */
  files: Partial<Record<Exclude<FileRole, "cdrom">, Uint8Array>>;
  /** The CD: its file, checked against its sha256 and read while the guest runs (an ISO may be gigabytes). */
  cdrom?: { path: string; bytes: number };
}

/** v86 loads the initrd at 64 MiB; the kernel then needs room to unpack it. */
const initrdLoadAddressMiB = 64;
const initrdHeadroomMiB = 16;
/** Guest memory at most (MiB); also bounds what a checkpoint may decompress to. */
export const memoryMiBMax = 2048;

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export function bundledImageNames(): string[] {
  const dir = bundledImagesDir();
  return readdirSync(dir)
    .filter((name) => existsSync(join(dir, name, "machine.json")))
    .sort();
}

/** Resolves `linux`, `tiny` or a path to a config JSON file. */
export function resolveConfigPath(image: string): string {
  if (image.endsWith(".json") || image.includes("/")) {
    const path = resolve(image);
    if (!existsSync(path)) {
      throw new LockstepError(ErrorCode.imageMissing, `Machine config "${image}" does not exist`);
    }
    return path;
  }
  const path = join(bundledImagesDir(), image, "machine.json");
  if (!existsSync(path)) {
    throw new LockstepError(
      ErrorCode.imageUnknown,
      `Unknown image "${image}"`,
      `bundled images: ${bundledImageNames().join(", ")}; or pass a path to a machine config .json`,
    );
  }
  return path;
}

export function readConfig(path: string): MachineConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new LockstepError(ErrorCode.configInvalid, `Machine config ${path} is not valid JSON: ${(e as Error).message}`);
  }
  return validateConfig(raw, path);
}

function fail(where: string, what: string): never {
  throw new LockstepError(ErrorCode.configInvalid, `Machine config ${where}: ${what}`);
}

export function validateConfig(raw: unknown, where: string): MachineConfig {
  if (typeof raw !== "object" || raw === null) fail(where, "must be a JSON object");
  const c = raw as Record<string, unknown>;
  if (typeof c.name !== "string" || !c.name) fail(where, `"name" must be a non-empty string`);
  if (c.kind !== "multiboot" && c.kind !== "linux" && c.kind !== "bios") fail(where, `"kind" must be "multiboot", "linux" or "bios", not ${JSON.stringify(c.kind)}`);
  if (c.boot !== undefined && c.boot !== "disk" && c.boot !== "cdrom") fail(where, `"boot" must be "disk" or "cdrom", not ${JSON.stringify(c.boot)}`);
  if (c.kind === "bios" && c.boot === undefined) fail(where, `a bios machine needs "boot": "disk" or "cdrom"`);
  if (typeof c.memoryMiB !== "number" || !Number.isInteger(c.memoryMiB) || c.memoryMiB < 1 || c.memoryMiB > memoryMiBMax) {
    fail(where, `"memoryMiB" must be an integer from 1 to ${memoryMiBMax}, not ${JSON.stringify(c.memoryMiB)}`);
  }
  if (c.cmdline !== undefined && typeof c.cmdline !== "string") fail(where, `"cmdline" must be a string`);
  if (typeof c.files !== "object" || c.files === null) fail(where, `"files" must be an object`);
  const files: Partial<Record<FileRole, FileRef>> = {};
  for (const [role, ref] of Object.entries(c.files as Record<string, unknown>)) {
    if (!(fileRoles as readonly string[]).includes(role)) fail(where, `unknown file role "${role}" (known: ${fileRoles.join(", ")})`);
    const r = ref as Record<string, unknown>;
    if (typeof r?.path !== "string" || typeof r?.sha256 !== "string" || !/^[0-9a-f]{64}$/.test(r.sha256)) {
      fail(where, `files.${role} must be {"path": string, "sha256": 64 hex digits}`);
    }
    files[role as FileRole] = { path: r.path, sha256: r.sha256 };
  }
  if (c.kind === "multiboot" && !files.multiboot) fail(where, `a multiboot machine needs files.multiboot`);
  if (c.kind === "linux" && (!files.bzimage || !files.bios)) fail(where, `a linux machine needs files.bzimage and files.bios`);
  if (c.kind === "bios" && (!files.bios || !files.vgaBios)) fail(where, `a bios machine needs files.bios and files.vgaBios`);
  if (c.kind === "bios" && c.boot === "cdrom" && !files.cdrom) fail(where, `a machine that boots from its CD needs files.cdrom`);
  let disk: DiskSpec | undefined;
  if (c.disk !== undefined) {
    const d = c.disk as Record<string, unknown>;
    if (typeof d.sizeMiB !== "number" || !Number.isInteger(d.sizeMiB) || d.sizeMiB < 1) fail(where, `"disk.sizeMiB" must be a positive integer`);
    if (d.format !== "ext2" && d.format !== "raw") fail(where, `"disk.format" must be "ext2" or "raw"`);
    disk = { sizeMiB: d.sizeMiB, format: d.format };
  }
  let nic: NicSpec | undefined;
  if (c.nic !== undefined) {
    const n = c.nic as Record<string, unknown>;
    if (n?.type !== "ne2k") fail(where, `"nic.type" must be "ne2k", not ${JSON.stringify(n?.type)}`);
    if (typeof n.mac !== "string" || !isUnicastMac(n.mac)) fail(where, `"nic.mac" must be a unicast MAC address like "52:54:00:12:34:56", not ${JSON.stringify(n.mac)}`);
    nic = { type: "ne2k", mac: n.mac.toLowerCase() };
  }
  return {
    name: c.name,
    description: typeof c.description === "string" ? c.description : "",
    kind: c.kind,
    ...(c.kind === "bios" ? { boot: c.boot as BootDevice } : {}),
    memoryMiB: c.memoryMiB,
    ...(c.cmdline !== undefined ? { cmdline: c.cmdline as string } : {}),
    files,
    ...(disk ? { disk } : {}),
    ...(nic ? { nic } : {}),
  };
}

/** "52:54:00:12:34:56": six hex bytes, the first one's group bit clear. */
export function isUnicastMac(mac: string): boolean {
  return /^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$/.test(mac) && (parseInt(mac.slice(0, 2), 16) & 1) === 0;
}

export function macBytes(mac: string): Uint8Array {
  return Uint8Array.from(mac.split(":"), (h) => parseInt(h, 16));
}

export interface LoadOptions {
  /** Overrides the config's memory size. */
  memoryMiB?: number;
}

/**
 * A machine that SeaBIOS boots from a user's image, without a config file: `cdrom:PATH` (an ISO,
 * attached read-only; its sha256 goes into the config, so into the log header), `hda` (the shared
 * disk given with --disk/--hda), or `hda+cdrom:PATH` (the hard disk, with the CD attached too: an
 * installed system with its installer CD still in). The BIOS files are the bundled ones.
 */
export function imageMachineConfig(image: string, memoryMiB = 128): MachineConfig | undefined {
  const m = /^(hda\+)?cdrom:(.+)$/.exec(image);
  const boot: BootDevice | undefined = image === "hda" || m?.[1] ? "disk" : m ? "cdrom" : undefined;
  if (!boot) return undefined;
  const biosDir = join(bundledImagesDir(), "bios");
  const ref = (path: string): FileRef => {
    if (!existsSync(path) || !statSync(path).isFile()) throw new LockstepError(ErrorCode.imageMissing, `Image file ${path} is missing`);
    return { path, sha256: fileSha256(path) };
  };
  const files: Partial<Record<FileRole, FileRef>> = { bios: ref(join(biosDir, "bios.bin")), vgaBios: ref(join(biosDir, "vgabios-stdvga.bin")) };
  const iso = m ? resolve(m[2]!) : undefined;
  if (iso) {
    if (existsSync(iso) && statSync(iso).isFile()) checkIso(iso, isoHead(iso));
    files.cdrom = ref(iso);
  }
  const description = boot === "cdrom" ? `SeaBIOS booting the CD ${iso}` : iso ? `SeaBIOS booting the hard disk, the CD ${iso} attached` : "SeaBIOS booting the hard disk";
  return { name: boot === "cdrom" ? "cdrom" : "hda", description, kind: "bios", boot, memoryMiB, files };
}

/**
 * sha256 of a file, read in parts (an ISO may be larger than a buffer can be), remembered per path,
 * size and mtime: an ISO is hashed once per thread, not at every load.
 */
const hashed = new Map<string, { size: number; mtimeMs: number; sha256: string }>();

/**
 * Hashes a file without blocking the event loop (a stream) and remembers it for `fileSha256`: a
 * node's thread carries its heartbeats, and an ISO may take seconds to hash.
 */
export async function prehashFile(path: string): Promise<void> {
  const st = statSync(path);
  const hash = createHash("sha256");
  for await (const part of createReadStream(path, { highWaterMark: 8 * 2 ** 20 })) hash.update(part as Buffer);
  hashed.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256: hash.digest("hex") });
}
function fileSha256(path: string): string {
  const st = statSync(path);
  const known = hashed.get(path);
  if (known && known.size === st.size && known.mtimeMs === st.mtimeMs) return known.sha256;
  const hash = createHash("sha256");
  const fd = openSync(path, "r");
  try {
    const part = Buffer.alloc(8 * 2 ** 20);
    for (let n; (n = readSync(fd, part, 0, part.length, null)) > 0; ) hash.update(part.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  const sha256 = hash.digest("hex");
  hashed.set(path, { size: st.size, mtimeMs: st.mtimeMs, sha256 });
  return sha256;
}

const isoSectorBytes = 2048;

/** The first 64 sectors of an ISO (the volume descriptors are there). */
function isoHead(path: string): Uint8Array {
  const fd = openSync(path, "r");
  try {
    const b = new Uint8Array(64 * 2048);
    const n = readSync(fd, b, 0, b.length, 0);
    return b.subarray(0, n);
  } finally {
    closeSync(fd);
  }
}

/** An ISO 9660 image (CD001 at sector 16) with an El Torito boot record; else ISO_INVALID. */
export function checkIso(path: string, bytes: Uint8Array): void {
  const at = (sector: number, off: number, n: number) => Buffer.from(bytes.subarray(sector * isoSectorBytes + off, sector * isoSectorBytes + off + n)).toString("latin1");
  if (bytes.byteLength < 18 * isoSectorBytes || at(16, 1, 5) !== "CD001") {
    throw new LockstepError(ErrorCode.isoInvalid, `${path} is not an ISO 9660 image (no "CD001" volume descriptor at sector 16)`, "give --cdrom a CD image (.iso)");
  }
  // volume descriptors from sector 16 until the terminator (type 255): one must be El Torito's boot record
  for (let sector = 16; (sector + 1) * isoSectorBytes <= bytes.byteLength && sector < 64; sector++) {
    const type = bytes[sector * isoSectorBytes]!;
    if (type === 0 && at(sector, 7, 23) === "EL TORITO SPECIFICATION") return;
    if (type === 255) break;
  }
  throw new LockstepError(ErrorCode.isoInvalid, `${path} is an ISO 9660 image but not bootable (no El Torito boot record)`, "make it with a boot loader, e.g. xorriso -as mkisofs -b isolinux/isolinux.bin -no-emul-boot ...");
}

/** A disk to boot from must start with a boot sector (0x55AA at byte 510); else DISK_NOT_BOOTABLE. */
export function checkBootSector(where: string, firstSector: Uint8Array): void {
  if (firstSector.byteLength < 512 || firstSector[510] !== 0x55 || firstSector[511] !== 0xaa) {
    throw new LockstepError(ErrorCode.diskNotBootable, `${where} is not bootable: its first sector has no boot signature (0x55AA at byte 510)`, "install a boot loader on it (e.g. extlinux with syslinux's mbr.bin), or boot a kernel or a CD instead");
  }
}

/** Reads a config and every file it names, verifying sizes and sha256s. */
export function loadMachine(image: string, options: LoadOptions = {}): LoadedMachine {
  const synthesized = imageMachineConfig(image);
  const path = synthesized ? image : resolveConfigPath(image);
  const config = synthesized ?? readConfig(path);
  if (options.memoryMiB !== undefined) {
    if (!Number.isInteger(options.memoryMiB) || options.memoryMiB < 1 || options.memoryMiB > memoryMiBMax) {
      throw new LockstepError(ErrorCode.usage, `Memory size ${options.memoryMiB} MiB is out of range`, `use 1 to ${memoryMiBMax}`);
    }
    config.memoryMiB = options.memoryMiB;
  }
  const base = synthesized ? "/" : dirname(path);
  const files: LoadedMachine["files"] = {};
  let cdrom: LoadedMachine["cdrom"];
  for (const role of fileRoles) {
    const ref = config.files[role];
    if (!ref) continue;
    const filePath = isAbsolute(ref.path) ? ref.path : join(base, ref.path);
    if (!existsSync(filePath) || !statSync(filePath).isFile()) {
      throw new LockstepError(
        ErrorCode.imageMissing,
        `Image file ${filePath} (${role} of "${config.name}") is missing`,
        "rebuild it with scripts/build-images.sh or restore it from git",
      );
    }
    const bytes = role === "cdrom" ? undefined : new Uint8Array(readFileSync(filePath));
    // the bytes that will boot, not a remembered hash of the path (but a CD, read in parts, is hashed once per thread)
    const actual = bytes ? sha256Hex(bytes) : fileSha256(filePath);
    if (actual !== ref.sha256) {
      throw new LockstepError(
        ErrorCode.imageCorrupt,
        `Image file ${filePath} (${role} of "${config.name}") has sha256 ${actual}, but the config expects ${ref.sha256}`,
        "the file is corrupt or was rebuilt without updating machine.json",
      );
    }
    if (bytes) files[role as Exclude<FileRole, "cdrom">] = bytes;
    else cdrom = { path: filePath, bytes: statSync(filePath).size };
  }
  checkMemory(config, files);
  return { config, source: path, files, ...(cdrom ? { cdrom } : {}) };
}

function checkMemory(config: MachineConfig, files: LoadedMachine["files"]): void {
  if (config.kind !== "linux" || !files.initrd) return;
  const neededMiB = initrdLoadAddressMiB + Math.ceil(files.initrd.byteLength / 2 ** 20) + initrdHeadroomMiB;
  if (config.memoryMiB < neededMiB) {
    throw new LockstepError(
      ErrorCode.memoryTooSmall,
      `Memory of ${config.memoryMiB} MiB is too small for "${config.name}": v86 loads its ${(files.initrd.byteLength / 2 ** 20).toFixed(1)} MiB initrd at ${initrdLoadAddressMiB} MiB`,
      `use --memory ${neededMiB} or more`,
    );
  }
}
