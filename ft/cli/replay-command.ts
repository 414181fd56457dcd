/**
 * `lockstep replay`: re-execute a recorded log offline, verifying every entry's instruction count
 * and every digest, printing the serial output it reproduces. The machine runs on its own thread (the
 * same machine thread as every node's); it never reads the wall clock on the guest's path, so idle
 * time replays at no cost.
 *
 * A log must end with power-off. One that does not (its last frame cut off, or simply no power-off:
 * a recording still being written, or whose recorder was killed) is refused before any work with
 * LOCKSTEP_ERR_LOG_TRUNCATED, saying where it ends; `--allow-truncated` replays what is there and
 * reports the replay as cut short. A replay that ends quietly on a partial log would pass for a
 * verified one.
 */
import { createHash } from "node:crypto";
import { SingleBar, Presets } from "cli-progress";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { FileDiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { DiskView, type DiskComparison } from "../../hypervisor/disk/disk-view.js";
import { checkHeader, imageForHeader } from "../../hypervisor/log-header.js";
import { listCheckpoints, loadCheckpointBytes } from "../../hypervisor/checkpoint-store.js";
import { LogReader } from "../../hypervisor/log-file.js";
import { MachineThread } from "../../hypervisor/machine-thread/machine-thread.js";
import type { NetSlice } from "../../hypervisor/machine-thread/machine-protocol.js";
import type { ReplayEnd, ReplaySummary } from "../../hypervisor/replayer.js";

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
  /** Network frames in and out as the replay reproduces them (`log pcap`). */
  onNet?: (n: NetSlice) => void;
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
  /** Network frames delivered to the guest (from the log) and sent by it (reproduced), and a sha256 of those sent. */
  netFramesIn: number;
  netFramesOut: number;
  netOutSha256: string;
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
  const image = imageForHeader(header, options.image, "The log's machine");
  const loaded = loadMachine(image, options.memory !== undefined ? { memoryMiB: options.memory } : {});
  checkHeader(header, loaded);
  if (!options.allowTruncated) refuseCutShort(reader);
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
  const startSlice = options.from !== undefined ? (listCheckpoints(reader.path).filter((s) => s <= options.from!).at(-1) ?? 0) : 0;
  const hash = createHash("sha256");
  const netHash = createHash("sha256");
  const net = { in: 0, out: 0 };
  let serialBytes = 0;
  const showOutput = options.output && !options.json;
  const bar =
    process.stderr.isTTY && !options.json
      ? new SingleBar({ format: "replay [{bar}] {percentage}% | slice {slice} | {eta_formatted} left", stream: process.stderr, hideCursor: true, clearOnComplete: true }, Presets.shades_classic)
      : undefined;
  const started = performance.now();
  let result: { end: ReplayEnd; summary: ReplaySummary; truncatedAt: number | null; guestMs: number } | undefined;
  let failure: Error | undefined;
  // the machine runs on its own thread, which reads the log itself: this thread prints and hashes
  // the output, notes the disk writes and keeps the progress bar moving
  const thread = await MachineThread.start(
    {
      role: "replay",
      image,
      load: options.memory !== undefined ? { memoryMiB: options.memory } : {},
      ...(header.disk ? { diskBytes: header.disk.bytes } : {}),
      clock: header.clock,
      digestEverySlices: header.digestEverySlices,
      paced: false,
      // the JIT as when it was recorded (it decides how many instructions a slice holds)
      ...(header.jit === false ? { jit: false } : {}),
      ...(startSlice > 0 ? { checkpoint: { bytes: loadCheckpointBytes(reader.path, startSlice, loaded.config.memoryMiB), slice: startSlice } } : {}),
      replay: { file: reader.path, allowTruncated: options.allowTruncated, startSlice, ...(options.until !== undefined ? { untilSlice: options.until } : {}) },
    },
    {
      batch: (b) => {
        for (const d of b.disk) view.note(d.requests);
        for (const n of b.net) {
          net[n.dir] += n.frames.length;
          if (n.dir === "out") for (const f of n.frames) netHash.update(framed(f));
          options.onNet?.(n);
        }
        for (const o of b.output) {
          hash.update(o.data);
          serialBytes += o.data.length;
          if (showOutput) process.stdout.write(o.data);
        }
        if (b.logOffset !== undefined) bar?.update(b.logOffset, { slice: b.slice });
      },
      replayed: (r) => (result = r),
      failed: (reason, error) => (failure = error ?? new Error(reason)),
    },
  ).catch(async (e: unknown) => {
    await checkDisk?.close();
    throw e;
  });
  bar?.start(reader.fileSize, 0, { slice: startSlice });
  try {
    await thread.ended;
  } finally {
    bar?.stop();
  }
  if (!result) {
    await checkDisk?.close();
    throw failure ?? new Error("the replay's machine thread ended without a result");
  }
  const { end, summary } = result;
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
    truncatedAtOffset: result.truncatedAt,
    startSlice,
    slices: summary.slices,
    instructions: summary.instructions,
    entries: summary.entries,
    digestsChecked: summary.digestsChecked,
    serialBytes,
    serialSha256: hash.digest("hex"),
    diskSectorsWritten: view.sectorsWritten,
    diskWrittenSha256: view.sha256(),
    netFramesIn: net.in,
    netFramesOut: net.out,
    netOutSha256: netHash.digest("hex"),
    ...(diskCheck ? { diskCheck } : {}),
    guestMs: result.guestMs,
    wallMs: Math.round(performance.now() - started),
  };
}

/** Throws LOCKSTEP_ERR_LOG_TRUNCATED unless the log ends with a whole power-off entry. */
function refuseCutShort(reader: LogReader): void {
  const { last, truncatedAt } = reader.findEnd();
  if (truncatedAt !== undefined) {
    throw new LockstepError(
      ErrorCode.logTruncated,
      `Log ${reader.path} is truncated at offset ${truncatedAt}: its last frame is cut off after slice ${last?.slice ?? 0} (the recording was cut short)`,
      "pass --allow-truncated to replay up to the last whole frame",
      { offset: truncatedAt },
    );
  }
  if (last?.kind === "control" && last.action === "power-off") return;
  throw new LockstepError(
    ErrorCode.logTruncated,
    `Log ${reader.path} ends at slice ${last?.slice ?? 0} without power-off: cut short? (a recording still being written, or whose recorder was killed)`,
    "pass --allow-truncated to replay what is there",
    { slice: last?.slice ?? 0 },
  );
}

/** A frame with its length in front (4 bytes, big-endian), so that a hash of frames keeps their boundaries. */
function framed(frame: Uint8Array): Uint8Array {
  const out = new Uint8Array(4 + frame.length);
  new DataView(out.buffer).setUint32(0, frame.length);
  out.set(frame, 4);
  return out;
}
