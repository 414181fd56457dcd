/**
 * In-process record and replay for tests: a recording is a header plus entries written through the
 * real log file format, and a replay re-executes it on a fresh machine.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { loadMachine } from "../../emulator/machine-config.js";
import type { LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { buildHeader, diskInfoOf } from "../../hypervisor/log-header.js";
import { LogReader, LogWriter, type LogHeader } from "../../hypervisor/log-file.js";
import { MachineSession } from "../../hypervisor/machine-session.js";
import { Replayer, type ReplayOptions, type ReplaySummary } from "../../hypervisor/replayer.js";

export const scratch = mkdtempSync(join(tmpdir(), "lockstep-rr-test-"));

export function writeRecording(name: string, header: LogHeader, entries: LogEntry[]): string {
  const path = join(scratch, name);
  const w = new LogWriter(path, header, { overwrite: true });
  for (const e of entries) w.append(e);
  w.close();
  return path;
}

export function readRecording(path: string): { header: LogHeader; entries: LogEntry[] } {
  const r = new LogReader(path);
  const entries: LogEntry[] = [];
  for (let e = r.next(); e; e = r.next()) entries.push(e);
  r.close();
  return { header: r.header, entries };
}

export function headerFor(image: string, clock: LogHeader["clock"], digestEverySlices: number): LogHeader {
  const loaded = loadMachine(image);
  const fresh = loaded.config.disk;
  return buildHeader({ loaded, disk: fresh ? diskInfoOf(makeBlankDisk(fresh), fresh) : undefined, clock, digestEverySlices, recordedAt: new Date() });
}

export interface ReplayResult {
  summary: ReplaySummary;
  serial: string;
  digests: string[];
}

/** Replays entries on a fresh machine built from the header; throws on divergence. */
export async function replayEntries(header: LogHeader, entries: LogEntry[], options: ReplayOptions = {}): Promise<ReplayResult> {
  const loaded = loadMachine(header.machine.name);
  const session = await MachineSession.open({ loaded, ...(header.disk ? { diskBytes: header.disk.bytes } : {}), clock: header.clock });
  let serial = "";
  const decoder = new TextDecoder();
  let i = 0;
  const replayer = new Replayer(session.driver, () => entries[i++], {
    ...options,
    onSlice: (r, s) => {
      if (r.serial) serial += decoder.decode(r.serial);
      options.onSlice?.(r, s);
    },
  });
  try {
    const summary = replayer.run();
    return { summary, serial, digests: entries.filter((e) => e.kind === "digest").map((e) => (e as { digest: string }).digest) };
  } finally {
    session.close();
  }
}
