/**
 * Log headers: made by the recorder from what it runs, checked by the replayer against what it
 * would run. A replay refuses a log whose machine, disk or v86 differ, naming the field that differs.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { ErrorCode, LockstepError } from "../emulator/lockstep-error.js";
import { bundledImageNames, fileRoles, sha256Hex, type DiskSpec, type LoadedMachine } from "../emulator/machine-config.js";
import { packageRoot } from "../emulator/package-root.js";
import { v86Version } from "../emulator/v86-machine.js";
import { logFormatVersion } from "./event-log/log-entry.js";
import type { DiskInfo, LogHeader } from "./log-file.js";
import type { ClockParams } from "./virtual-clock.js";

export function lockstepVersion(): string {
  return (JSON.parse(readFileSync(join(packageRoot(), "package.json"), "utf8")) as { version: string }).version;
}

/** Describes a disk image held in memory (`fresh`: made from this spec). */
export function diskInfoOf(image: Uint8Array, fresh?: DiskSpec): DiskInfo {
  return { bytes: image.byteLength, sha256: sha256Hex(image), ...(fresh ? { fresh } : {}) };
}

export function buildHeader(args: {
  loaded: LoadedMachine;
  disk: DiskInfo | undefined;
  clock: ClockParams;
  digestEverySlices: number;
  recordedAt: Date;
  /** false: the machine runs with v86's JIT off (said in the header: a replay must too). */
  jit?: boolean;
}): LogHeader {
  return {
    format: logFormatVersion,
    v86: v86Version(),
    lockstep: lockstepVersion(),
    machine: args.loaded.config,
    disk: args.disk ?? null,
    clock: args.clock,
    initialState: { kind: "power-on" },
    digestEverySlices: args.digestEverySlices,
    recordedAt: args.recordedAt.toISOString(),
    ...(args.jit === false ? { jit: false as const } : {}),
  };
}

function mismatch(field: string, log: unknown, here: unknown, hint?: string): never {
  throw new LockstepError(
    ErrorCode.logMismatch,
    `Log was made for another machine: ${field} is ${JSON.stringify(log)} in the log but ${JSON.stringify(here)} here`,
    hint,
    { field, log, here },
  );
}

/**
 * Throws LOCKSTEP_ERR_LOG_MISMATCH naming the first field that differs. The disk's contents are not
 * compared: a replay takes every read's data from the log.
 */
export function checkHeader(header: LogHeader, loaded: LoadedMachine): void {
  if (header.v86 !== v86Version()) mismatch("the v86 version", header.v86, v86Version(), "replay with the v86 version that recorded it");
  const a = header.machine;
  const b = loaded.config;
  if (a.kind !== b.kind) mismatch("machine kind", a.kind, b.kind);
  if ((a.boot ?? null) !== (b.boot ?? null)) mismatch("the boot device", a.boot ?? null, b.boot ?? null);
  if (a.memoryMiB !== b.memoryMiB) mismatch("memory (MiB)", a.memoryMiB, b.memoryMiB, `pass --memory ${a.memoryMiB}`);
  if ((a.cmdline ?? "") !== (b.cmdline ?? "")) mismatch("the kernel command line", a.cmdline ?? "", b.cmdline ?? "");
  const nic = (m: typeof a) => (m.nic ? `${m.nic.type} ${m.nic.mac}` : "none");
  if (nic(a) !== nic(b)) mismatch("the network card", nic(a), nic(b), "the machine config's \"nic\" must match the one that recorded the log");
  for (const role of fileRoles) {
    const x = a.files[role]?.sha256 ?? null;
    const y = b.files[role]?.sha256 ?? null;
    if (x !== y) mismatch(`the sha256 of ${role}`, x, y, `the log was recorded with image "${a.name}"`);
  }
}

/**
 * The image to build the machine a header describes: `override` (a config or `cdrom:PATH` the user
 * named; for a machine that boots its hard disk with a CD attached, `cdrom:PATH` names that CD),
 * else the bundled image of the header's name, or `hda` (SeaBIOS booting the disk, which needs no
 * file of its own). A CD must be named: its file is the user's.
 */
export function imageForHeader(header: LogHeader, override: string | undefined, whose: string): string {
  const m = header.machine;
  // --cdrom names the CD; whether the machine boots it or its hard disk (with it attached) is the log's
  if (override?.startsWith("cdrom:") && m.kind === "bios" && m.boot === "disk") return `hda+${override}`;
  if (override) return override;
  if (m.kind === "bios" && m.files.cdrom) {
    const what = m.boot === "cdrom" ? "boots a CD" : "has a CD attached";
    throw new LockstepError(ErrorCode.imageUnknown, `${whose} ${what} (sha256 ${m.files.cdrom.sha256.slice(0, 16)}...)`, "pass --cdrom ISO with the same file");
  }
  if (m.name !== "hda" && !bundledImageNames().includes(m.name)) {
    throw new LockstepError(ErrorCode.imageUnknown, `${whose} "${m.name}" is not a bundled image`, "pass its config with --image CONFIG.json");
  }
  return m.name;
}
