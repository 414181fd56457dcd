/**
 * What a node's machine thread starts from. The primary boots its image from power-on with a fresh
 * clock and writes the log header that a backup checks its own machine against; a backup builds the
 * machine that header describes (the bundled image of that name, or the config it was given), from
 * power-on or from a checkpoint.
 */
import { randomInt } from "node:crypto";
import { loadMachine, type MachineConfig } from "../../emulator/machine-config.js";
import { buildHeader, checkHeader, imageForHeader } from "../../hypervisor/log-header.js";
import type { DiskInfo, LogHeader } from "../../hypervisor/log-file.js";
import type { MachineInit } from "../../hypervisor/machine-thread/machine-protocol.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";

const digestEverySlices = 1000;

/** The primary's machine at power-on; `openDisk` opens the machine's disk and says what the header records of it. */
export async function primaryMachine(image: string, memoryMiB: number | undefined, openDisk: (config: MachineConfig) => Promise<DiskInfo | undefined>): Promise<{ header: LogHeader; init: MachineInit }> {
  const load = memoryMiB !== undefined ? { memoryMiB } : {};
  const loaded = loadMachine(image, load);
  const disk = await openDisk(loaded.config);
  const clock = defaultClockParams(Date.now(), randomInt(2 ** 31));
  const header = buildHeader({ loaded, disk, clock, digestEverySlices, recordedAt: new Date() });
  // at power-on the guest's clock starts at the host's time
  const init: MachineInit = { role: "primary", image, load, sha256s: sha256sOf(header), ...(disk ? { diskBytes: disk.bytes } : {}), clock, wallEpochMs: clock.epochMs, digestEverySlices, paced: true };
  return { header, init };
}

/** A backup's machine for the primary's `header`; throws a LockstepError when this node cannot build that machine. */
export function backupMachine(header: LogHeader, imageOverride: string | undefined, checkpoint?: { bytes: Uint8Array; slice: number }): MachineInit {
  const image = imageForHeader(header, imageOverride, "The primary's machine");
  const load = { memoryMiB: header.machine.memoryMiB };
  checkHeader(header, loadMachine(image, load));
  // the disk itself is not opened until takeover: the log carries every read's data
  return { role: "backup", image, load, sha256s: sha256sOf(header), ...(header.disk ? { diskBytes: header.disk.bytes } : {}), clock: header.clock, digestEverySlices, paced: true, ...(header.jit === false ? { jit: false } : {}), ...(checkpoint ? { checkpoint } : {}) };
}

/** The sha256 of each file the header's machine boots from. */
function sha256sOf(header: LogHeader): Record<string, string> {
  return Object.fromEntries(Object.entries(header.machine.files).map(([role, ref]) => [role, ref.sha256]));
}
