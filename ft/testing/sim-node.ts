/**
 * SimNode: one node of the simulated pair — the production NodeCore, its scripted machine thread,
 * its path to the shared disk and port onto it once primary — and what the simulation remembers
 * about it to check invariants.
 */
import type { BackendDiskPort } from "../../hypervisor/disk/disk-port.js";
import { NodeCore } from "../core/node-core.js";
import { defaultLogRetention } from "../core/retained-log.js";
import type { ScriptedMachineThread } from "./scripted-machine-thread.js";
import { SimDiskPath } from "./sim-disk.js";

export const heartbeatIntervalMs = 20;
export const failureTimeoutMs = 150;
export const channelTimeoutMs = 600;

export class SimNode {
  alive = true;
  pausedUntil = -1;
  /** Leased arbiter: the hold the arbiter confirmed to this node lasts until this tick. */
  heldUntil = Number.NEGATIVE_INFINITY;
  /** Console bytes this node had released at the last check (a release must happen under a hold). */
  releasedBytes = 0;
  machine: ScriptedMachineThread | undefined;
  /** The digest after each slice this node ran as primary. */
  digests = new Map<number, string>();
  /** The highest slice whose output this node released. */
  releasedMax = -1;
  /** The checkpoint the machine took last, until the core says where it goes. */
  checkpoint: Uint8Array | undefined;
  /** The last tick its machine ran a slice. */
  ranAt = -1;
  /** Inputs of this node's machine already checked for a second application. */
  appliedSeen = 0;
  /** Inputs its machine had applied when it took over (the rest it applied as primary). */
  appliedAtTakeover = 0;
  /** The node's event loop for disk completions and timers. */
  readonly diskPath: SimDiskPath;
  /** Primary: the port onto the shared disk (made when it became primary, as LockstepNode does). */
  disk: BackendDiskPort | undefined;
  /** The slice through which the core released disk writes to the port. */
  diskReleased = Number.NEGATIVE_INFINITY;
  /** Writes its machine issued as primary: request id -> the slice that issued it (re-issued ones: the slice it took over at). */
  writeTags = new Map<number, number>();
  /** The slice its log was complete through when it took over (what it acknowledged as a backup). */
  completeAsBackup = 0;
  /**
   * The node at the other end of its peer connection: a backup's is the primary it dialed, a
   * primary's the backup whose hello it adopted (it sends on that connection only; after a
   * takeover it still holds the one it dialed as a backup, until it adopts another).
   */
  link: SimNode | undefined;
  /** Cut off until this tick: what it sends is lost (it still hears the others). */
  cutUntil = -1;
  /** Its logging channel is stalled until this tick: what it sends there waits (its datagrams do not). */
  stallUntil = -1;
  /** A newcomer (a third node dialing the primary): it dials again this many ticks after a refusal. */
  redialTicks: number | undefined;
  /** A newcomer: when it dials again. */
  redialAt: number | undefined;
  /** A newcomer no primary took by this tick gives up (it is stopped). */
  giveUpAt: number | undefined;
  /** It fell silent (paused or cut off) while a newcomer dialed its primary. */
  silenced = false;
  readonly core: NodeCore;

  constructor(
    readonly name: string,
    readonly nodeId: string,
    readonly join: boolean,
    powerOnLogEntriesMax: number,
    arbiterHold = false,
  ) {
    this.diskPath = new SimDiskPath(nodeId);
    this.core = new NodeCore({
      nodeId,
      heartbeatIntervalMs,
      failureTimeoutMs,
      channelTimeoutMs,
      ...(join ? { join: true } : {}),
      run: nodeId,
      primary: { unackedEntriesMax: 400, lagSlicesMax: 50, retention: { ...defaultLogRetention, powerOnLogEntriesMax } },
      consoleRetainBytes: 1 << 30,
      ...(arbiterHold ? { arbiterHold: true } : {}),
    });
  }

  /** As a backup (now or before it took over): the slice its log is complete through. */
  get backupComplete(): number {
    return this.core.backup?.complete ?? this.completeAsBackup;
  }
}
