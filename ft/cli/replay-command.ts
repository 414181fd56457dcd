/**
 * `lockstep replay`: re-execute a recorded log offline, verifying every entry's instruction count
 * and every digest, printing the serial output it reproduces. Never reads the wall clock on the
 * guest's path, so idle time replays at no cost.
 */
import { createHash } from "node:crypto";
import { SingleBar, Presets } from "cli-progress";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { bundledImageNames, loadMachine } from "../../emulator/machine-config.js";
import { FileDiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { DiskView, type DiskComparison } from "../../hypervisor/disk/disk-view.js";
import { checkHeader } from "../../hypervisor/log-header.js";
import { sessionFromCheckpoint } from "../../hypervisor/checkpoint.js";
import { listCheckpoints, loadCheckpoint } from "../../hypervisor/checkpoint-store.js";
import { LogReader } from "../../hypervisor/log-file.js";
import { MachineSession } from "../../hypervisor/machine-session.js";
import { Replayer, type ReplayEnd } from "../../hypervisor/replayer.js";

export interface ReplayCommandOptions {
  file: string;
  image?: string;
  memory?: number;
  disk?: string;
  until?: number;
  /** Start at the nearest checkpoint at or before this slice. */
  from?: number;
  json: boolean;
  allowTruncated: boolean;
  output: boolean;
}

export interface ReplayReport {
  file: string;
  end: ReplayEnd;
  /** The log ended with power-off (false: the recording was cut short). */
  complete: boolean;
  truncatedAtOffset: number | null;
  /** The boundary the replay started at (0: power-on; else a checkpoint's). */
  startSlice: number;
  slices: number;
  instructions: number;
  entries: number;
  digestsChecked: number;
  serialBytes: number;
  serialSha256: string;
  /** Sectors the guest wrote, and a sha256 of their final contents (see DiskView). */
  diskSectorsWritten: number;
  diskWrittenSha256: string;
  /** With --disk: the comparison of that disk with what the guest wrote (mismatches are an error). */
  diskCheck?: DiskComparison;
  guestMs: number;
  wallMs: number;
}

export async function replayCommand(options: ReplayCommandOptions): Promise<void> {
  const reader = new LogReader(options.file, { allowTruncated: options.allowTruncated });
  try {
    const report = await replayLog(reader, options);
    if (options.json) process.stdout.write(JSON.stringify(report) + "\n");
    else {
      process.stderr.write(
        `\nlockstep: replayed ${report.slices} slices, ${report.instructions} instructions, ${report.digestsChecked} digests verified, ` +
          `${(report.guestMs / 1000).toFixed(2)} s of guest time in ${(report.wallMs / 1000).toFixed(2)} s (${report.end}${report.complete ? "" : ", recording was cut short"})\n`,
      );
    }
  } finally {
    reader.close();
  }
}

export async function replayLog(reader: LogReader, options: Omit<ReplayCommandOptions, "file">): Promise<ReplayReport> {
  const header = reader.header;
  const image = options.image ?? header.machine.name;
  if (!options.image && !bundledImageNames().includes(image)) {
    throw new LockstepError(ErrorCode.imageUnknown, `The log's machine "${image}" is not a bundled image`, "pass its config with --image CONFIG.json");
  }
  const loaded = loadMachine(image, options.memory !== undefined ? { memoryMiB: options.memory } : {});
  checkHeader(header, loaded);
  // the disk to compare with at the end is opened first: a missing one is an error before the work
  const checkDisk = options.disk ? await FileDiskBackend.open(options.disk, { readOnly: true }) : undefined;
  if (checkDisk && header.disk && checkDisk.bytes !== header.disk.bytes) {
    await checkDisk.close();
    throw new LockstepError(ErrorCode.diskMismatch, `Disk ${options.disk} has ${checkDisk.bytes} bytes; the recorded guest's disk had ${header.disk.bytes}`);
  }
  if (checkDisk && options.from !== undefined) {
    await checkDisk.close();
    throw new LockstepError(ErrorCode.usage, "--disk needs a replay from power-on: it compares every write the guest made", "drop --from");
  }
  const view = new DiskView();
  const sessionOptions = { loaded, ...(header.disk ? { diskBytes: header.disk.bytes } : {}), clock: header.clock };
  const startSlice = options.from !== undefined ? (listCheckpoints(reader.path).filter((s) => s <= options.from!).at(-1) ?? 0) : 0;
  let session: MachineSession;
  if (startSlice > 0) {
    session = await sessionFromCheckpoint(sessionOptions, await loadCheckpoint(reader.path, startSlice));
    // skip the log up to and including the checkpoint entry: the checkpoint is the machine there
    for (;;) {
      const e = reader.next();
      if (!e || e.slice > startSlice) {
        session.close();
        throw new LockstepError(ErrorCode.checkpointCorrupt, `The log has no checkpoint entry at slice ${startSlice}: the checkpoint does not belong to this log`);
      }
      if (e.kind === "control" && e.action === "checkpoint" && e.slice === startSlice) break;
    }
  } else {
    session = await MachineSession.open(sessionOptions);
  }
  const hash = createHash("sha256");
  let serialBytes = 0;
  const showOutput = options.output && !options.json;
  const replayer = new Replayer(session.driver, () => reader.next(), {
    onSlice: (result) => {
      if (result.diskRequests.length > 0) view.note(result.diskRequests);
      if (!result.serial) return;
      hash.update(result.serial);
      serialBytes += result.serial.length;
      if (showOutput) process.stdout.write(result.serial);
    },
    ...(options.until !== undefined ? { untilSlice: options.until } : {}),
  });
  const bar =
    process.stderr.isTTY && !options.json
      ? new SingleBar({ format: "replay [{bar}] {percentage}% | slice {slice} | {eta_formatted} left", stream: process.stderr, hideCursor: true, clearOnComplete: true }, Presets.shades_classic)
      : undefined;
  bar?.start(reader.fileSize, 0, { slice: 0 });
  const started = performance.now();
  let end: ReplayEnd | undefined;
  try {
    while (!end) {
      end = replayer.step(2000);
      bar?.update(reader.offset, { slice: session.driver.slice });
      // let stdout drain and signals arrive between batches
      await new Promise<void>((r) => setImmediate(r));
    }
  } finally {
    bar?.stop();
    session.close();
  }
  const summary = replayer.summary(end);
  let diskCheck: DiskComparison | undefined;
  if (checkDisk) {
    try {
      diskCheck = await view.compare((offset, length) => checkDisk.read(offset, length));
    } finally {
      await checkDisk.close();
    }
    if (diskCheck.mismatchedSectors > 0) {
      throw new LockstepError(
        ErrorCode.diskMismatch,
        `Disk ${options.disk} differs from what the replayed guest wrote: ${diskCheck.mismatchedSectors} of ${diskCheck.sectorsWritten} written sectors, the first is sector ${diskCheck.firstMismatch}`,
        "the disk lost or reordered writes, or it is not the disk this recording wrote to",
        { ...diskCheck },
      );
    }
  }
  return {
    file: reader.path,
    end,
    complete: end === "power-off",
    truncatedAtOffset: reader.truncatedAt ?? null,
    startSlice,
    slices: summary.slices,
    instructions: summary.instructions,
    entries: summary.entries,
    digestsChecked: summary.digestsChecked,
    serialBytes,
    serialSha256: hash.digest("hex"),
    diskSectorsWritten: view.sectorsWritten,
    diskWrittenSha256: view.sha256(),
    ...(diskCheck ? { diskCheck } : {}),
    guestMs: Math.round(session.clock.peekMs()),
    wallMs: Math.round(performance.now() - started),
  };
}
