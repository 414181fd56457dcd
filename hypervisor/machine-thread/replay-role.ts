/**
 * The machine thread's "replay" role (`lockstep replay`): re-executes a log file offline, from
 * power-on or from the checkpoint the machine was built from, verifying every entry's instruction
 * count and every digest. The thread reads the file itself, so entries never cross threads; what
 * the main thread needs (serial output, disk requests and network frames per slice, the file offset reached for a
 * progress bar) goes out in batches, and the summary at the end. A divergence or a corrupt log ends
 * the thread with the error, its code intact.
 */
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { LogReader } from "../log-file.js";
import type { MachineSession } from "../machine-session.js";
import { Replayer, type ReplayEnd } from "../replayer.js";
import type { FromMachine, MachineInit } from "./machine-protocol.js";
import type { Outbox } from "./machine-worker.js";
import type { SharedCounters } from "./shared-counters.js";

/** Slices replayed between batches (and between looks at the stop flag). */
const stepSlices = 2000;

export function replay(
  session: MachineSession,
  spec: NonNullable<MachineInit["replay"]>,
  io: { outbox: Outbox; post: (m: FromMachine) => void; counters: SharedCounters },
): void {
  const driver = session.driver;
  const reader = new LogReader(spec.file, { allowTruncated: spec.allowTruncated });
  try {
    if (spec.startSlice > 0) skipToCheckpoint(reader, spec.startSlice);
    const replayer = new Replayer(driver, () => reader.next(), {
      onSlice: (r, slice) => io.outbox.slice(slice, r.serial, r.diskRequests, r.net, driver.clock.peekMs()),
      // frames in, at the boundary that delivered them (for a capture of the session)
      onEntry: (e) => e.kind === "net" && io.outbox.net(e.slice, driver.clock.peekMs(), "in", [e.data]),
      ...(spec.untilSlice !== undefined ? { untilSlice: spec.untilSlice } : {}),
    });
    let end: ReplayEnd | undefined;
    while (!end) {
      end = replayer.step(stepSlices);
      io.counters.publish(driver.slice, driver.icount, driver.clock.peekMs());
      io.counters.digestsVerified = replayer.digestsVerified;
      io.outbox.flush(driver.slice, reader.offset);
    }
    io.post({ type: "replayed", end, summary: replayer.summary(end), truncatedAt: reader.truncatedAt ?? null, guestMs: Math.round(driver.clock.peekMs()) });
  } finally {
    reader.close();
  }
}

/** Reads the log up to and including the checkpoint entry at `slice`: the machine is built from it. */
function skipToCheckpoint(reader: LogReader, slice: number): void {
  for (;;) {
    const e = reader.next();
    if (!e || e.slice > slice) {
      throw new LockstepError(ErrorCode.checkpointCorrupt, `The log has no checkpoint entry at slice ${slice}: the checkpoint does not belong to this log`);
    }
    if (e.kind === "control" && e.action === "checkpoint" && e.slice === slice) return;
  }
}
