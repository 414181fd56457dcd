/**
 * `lockstep log pcap FILE.lslog > out.pcap`: the network frames of a recorded session, in and out,
 * as a pcap file that tcpdump and Wireshark read. Frames in come from the log; frames out are
 * reproduced by replaying it (they are output, never logged), so the capture is also a check of
 * the replay. Each frame is stamped with the guest's time of its slice: frames in at the boundary
 * that delivered them, frames out at the end of the slice that sent them.
 */
import { writeSync } from "node:fs";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { LogReader } from "../../hypervisor/log-file.js";
import type { NetSlice } from "../../hypervisor/machine-thread/machine-protocol.js";
import { replayLog } from "./replay-command.js";

/** pcap's classic format: microsecond timestamps, Ethernet frames. */
export function pcapHeader(): Uint8Array {
  const b = Buffer.alloc(24);
  b.writeUInt32LE(0xa1b2c3d4, 0);
  b.writeUInt16LE(2, 4);
  b.writeUInt16LE(4, 6);
  b.writeInt32LE(0, 8); // thiszone
  b.writeUInt32LE(0, 12); // sigfigs
  b.writeUInt32LE(65535, 16); // snaplen
  b.writeUInt32LE(1, 20); // LINKTYPE_ETHERNET
  return b;
}

export function pcapRecord(unixMs: number, frame: Uint8Array): Uint8Array {
  const b = Buffer.alloc(16 + frame.length);
  const us = Math.round(unixMs * 1000);
  b.writeUInt32LE(Math.floor(us / 1e6), 0);
  b.writeUInt32LE(us % 1e6, 4);
  b.writeUInt32LE(frame.length, 8);
  b.writeUInt32LE(frame.length, 12);
  b.set(frame, 16);
  return b;
}

export async function logPcapCommand(file: string, options: { allowTruncated: boolean; image?: string }): Promise<void> {
  if (process.stdout.isTTY) throw new LockstepError(ErrorCode.usage, "lockstep log pcap writes a binary capture to standard output", "redirect it: lockstep log pcap FILE.lslog > out.pcap");
  const reader = new LogReader(file, { allowTruncated: options.allowTruncated });
  try {
    if (!reader.header.machine.nic) throw new LockstepError(ErrorCode.usage, `${file} was recorded on a machine without a network card: it has no frames`);
    const epochMs = reader.header.clock.epochMs;
    writeAll(pcapHeader());
    const write = (n: NetSlice) => {
      for (const f of n.frames) writeAll(pcapRecord(epochMs + n.guestMs, f));
    };
    const report = await replayLog(reader, { json: true, output: false, allowTruncated: options.allowTruncated, ...(options.image ? { image: options.image } : {}), onNet: write });
    process.stderr.write(`lockstep: ${report.netFramesIn} frames in and ${report.netFramesOut} out over ${(report.guestMs / 1000).toFixed(2)} s of guest time (${report.slices} slices replayed, ${report.digestsChecked} digests verified)\n`);
  } finally {
    reader.close();
  }
}

const pause = new Int32Array(new SharedArrayBuffer(4));

/**
 * Writes to standard output synchronously, so the capture is whole when the command ends and a slow
 * reader holds the replay back instead of filling memory. A pipe's descriptor is non-blocking in
 * Node (EAGAIN when the reader lags: wait and go on); a reader that went away (EPIPE: `| head`) ends
 * the command quietly, as for any tool writing to a pipe.
 */
function writeAll(bytes: Uint8Array): void {
  for (let at = 0; at < bytes.length; ) {
    try {
      at += writeSync(1, bytes, at, bytes.length - at);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EAGAIN") Atomics.wait(pause, 0, 0, 2);
      else if (code === "EPIPE") process.exit(0);
      else throw e;
    }
  }
}
