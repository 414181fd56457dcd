/**
 * The messages between a node's main thread and its machine thread (a worker_threads Worker that
 * owns v86, the slice driver and the recorder or replayer). Large byte arrays (disk data, a
 * checkpoint's memory) are transferred, not copied.
 *
 * One worker serves every command that runs a machine: `primary` and `run`/`record` (role
 * "primary": records, alone or followed by a backup), `backup` (role "backup": follows a log it is
 * passed, records after a takeover) and `replay` (role "replay": re-executes a log file offline).
 *
 *   main -> machine
 *     input        console bytes for the next boundary, tagged with the console client and sequence
 *                  (a node's console sessions; `run` and `record` type untagged bytes)
 *     keys         PS/2 scancodes for the next boundary
 *     disk-read    a read finished: its data, for the next boundary (logged there)
 *     disk-write   a write is on the disk: its completion, for the next boundary (logged there)
 *     net          primary: Ethernet frames from the host link, for the guest's NIC (logged when
 *                  its receive ring has room; dropped, as by a NIC, when too many wait)
 *     entries      backup: log entries received from the primary, in log order
 *     checkpoint   primary: take a checkpoint at the next boundary without disk I/O in flight
 *     go-live      backup: replay everything received, then record as a primary (takeover)
 *     stop         primary: log power-off at the boundary and stop; backup: stop
 *   machine -> main
 *     ready        the machine is built (from power-on or a checkpoint) and sits at `slice`
 *     batch        entries recorded (primary), serial output, disk requests and network frames
 *                  (out; in too in a replay, for a capture) per slice, and the
 *                  boundary reached; `atWallMs` is when the newest slice ended (host Unix ms)
 *     executed     backup: it executed the log through `slice` and waits for more
 *     checkpoint   primary: the checkpoint taken (its control entry is in the batch before it)
 *     took-over    backup: replayed everything, now at `slice`; `pending` are disk requests the log
 *                  completed none of (the new primary issues them again)
 *     input-refused the machine could not queue an input (the client must resend it)
 *     replayed     replay: the log file was replayed to its end (or `untilSlice`); the summary
 *     stopped      the machine stopped as asked
 *     failed       the machine stopped by itself: divergence, power-off, an error (`reason`; an
 *                  operating error keeps its stable code, hint and details in `error`)
 */
import type { TextScreen } from "../../emulator/text-screen.js";
import type { GraphicsScreen } from "../../emulator/vga-graphics.js";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import type { LoadOptions } from "../../emulator/machine-config.js";
import type { SessionCheckpoint } from "../checkpoint.js";
import type { LogEntry } from "../event-log/log-entry.js";
import type { ReplayEnd, ReplaySummary } from "../replayer.js";
import type { ClockParams } from "../virtual-clock.js";

export interface MachineInit {
  role: "primary" | "backup" | "replay";
  /** A bundled machine name or a config path, with its load options (as `loadMachine` takes them). */
  image: string;
  load: LoadOptions;
  /** The sha256 of every file the machine boots from, as the log header names them: the thread checks the files it loads against them (a file replaced since the header was made is refused). */
  sha256s?: Partial<Record<string, string>>;
  /** The guest's hard disk size (its data comes through disk-read messages or the log). */
  diskBytes?: number;
  clock: ClockParams;
  /** Primary from power-on: Unix ms of guest time 0, so guest time follows the host calendar. */
  wallEpochMs?: number;
  digestEverySlices: number;
  /** Follow wall time (live) or run flat out. */
  paced: boolean;
  /** How much lower (nice, Linux) the machine thread runs than the main thread (default 5; 0: same). */
  nice?: number;
  /** Let v86 compile hot code to wasm (default true; the guest's execution is the same either way). */
  jit?: boolean;
  /**
   * A primary writing a log file: a progress entry at least this often (host ms) while the guest
   * runs, so that a recording cut short is complete through its last one. Without it, progress
   * entries follow the shared `progress` flag (a backup follows: after output and every 5 ms).
   */
  progressEveryMs?: number;
  /** Role "replay": the log file, where to start (0 or the checkpoint's slice) and stop. */
  replay?: { file: string; allowTruncated: boolean; startSlice: number; untilSlice?: number };
  /** Backup joining from a checkpoint: the encoded checkpoint and the slice the primary said it is at. */
  checkpoint?: { bytes: Uint8Array; slice: number };
}

export type InputSource = { client: string; seq: number };

export type ToMachine =
  | { type: "input"; data: Uint8Array; source?: InputSource }
  | { type: "keys"; data: Uint8Array; source?: InputSource }
  | { type: "disk-read"; id: number; data: Uint8Array }
  | { type: "disk-write"; id: number }
  | { type: "net"; frames: Uint8Array[] }
  | { type: "entries"; entries: LogEntry[] }
  | { type: "checkpoint" }
  | { type: "go-live" }
  /** The VGA text screen, answered with a "screen" message (a view: it changes nothing). */
  | { type: "screen" }
  /** The screen's pixels in a VBE graphics mode, answered with a "graphics" message (a view). */
  | { type: "graphics" }
  /** The machine thread's own memory (its V8 heap and buffers), answered with a "memory" message. */
  | { type: "memory" }
  | { type: "stop" };

export interface MachineBatch {
  type: "batch";
  entries: LogEntry[];
  output: Array<{ slice: number; data: Uint8Array }>;
  disk: Array<{ slice: number; requests: DiskRequest[] }>;
  net: NetSlice[];
  slice: number;
  atWallMs: number;
  /** Replay: the byte offset reached in the log file. */
  logOffset?: number;
}

/** Ethernet frames of one slice, and the guest time at its end (ms). */
export interface NetSlice {
  slice: number;
  guestMs: number;
  dir: "in" | "out";
  frames: Uint8Array[];
}

/** An operating error (LockstepError) as it crosses threads. */
export interface MachineError {
  code: string;
  message: string;
  hint?: string;
  details?: Record<string, unknown>;
}

export type FromMachine =
  | { type: "ready"; slice: number }
  | MachineBatch
  | { type: "executed"; slice: number }
  | { type: "checkpoint"; checkpoint: SessionCheckpoint; pauseMs: number }
  | { type: "took-over"; slice: number; pending: DiskRequest[] }
  | { type: "input-refused"; source: InputSource }
  | { type: "replayed"; end: ReplayEnd; summary: ReplaySummary; truncatedAt: number | null; guestMs: number }
  | { type: "screen"; screen: TextScreen }
  | { type: "graphics"; graphics: GraphicsScreen | null }
  | { type: "memory"; usage: ThreadMemory }
  | { type: "stopped" }
  | { type: "failed"; reason: string; error?: MachineError };

/** A thread's memory in MiB: its V8 heap, and the buffers (guest RAM among them) outside it. */
export interface ThreadMemory {
  heapUsed: number;
  external: number;
  arrayBuffers: number;
}
