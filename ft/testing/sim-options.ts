/**
 * The faults of one simulated run, drawn from its seed: each seed enables a different mix at
 * different rates, so that many seeds cover many combinations.
 */
import { defaultLogRetention } from "../core/retained-log.js";
import { SeededRandom } from "./seeded-random.js";

export interface SimOptions {
  seed: number;
  ticks: number;
  dropRate: number;
  duplicateRate: number;
  delayMaxTicks: number;
  /** Chance per tick that a node is killed (then restarted as a fresh backup later). */
  killRate: number;
  /** Chance per tick that a node pauses (for up to 400 ticks). */
  pauseRate: number;
  /** Chance that a restarted node joins from a checkpoint rather than from power-on. */
  joinRate: number;
  /** Chance per tick that a partition starts (lasting up to partitionMaxTicks). */
  partitionRate: number;
  partitionMaxTicks: number;
  /** Chance per tick that the arbiter becomes unreachable (for up to 300 ticks). */
  arbiterOutageRate: number;
  /** Chance per tick and client that its console connection drops (it reconnects and resends). */
  consoleDropRate: number;
  /** About one guest slice in this many issues a disk request. */
  diskEvery: number;
  /** Ticks a disk operation takes at most. */
  diskLatencyMaxTicks: number;
  /** Chance per tick that a node's path to the disk fails (for up to 200 ticks). */
  diskOutageRate: number;
  /** Log entries a node keeps whole from power-on (small: backups that attach later are sent a checkpoint). */
  powerOnLogEntriesMax: number;
  /**
   * Chance per tick, while the pair is protected, that its backup falls silent but stays alive
   * (paused, or cut off: it hears the primary, the primary does not hear it) and a new backup of
   * another node id dials the primary meanwhile (a third node, for a while).
   */
  newcomerRate: number;
  /**
   * The arbiter has leases (as etcd): a primary must renew its hold on its epoch, and releases output
   * and disk writes and runs its guest only while the hold lasts.
   */
  leasedArbiter: boolean;
  /**
   * Chance per tick that a node's logging channel stalls (as TCP does when a retransmission is lost
   * again) for up to stallMaxTicks: what it sends on the channel waits, its heartbeat datagrams do not.
   */
  stallRate: number;
  stallMaxTicks: number;
  /** Nodes send heartbeat datagrams beside the channel (off: detection rests on the channel alone). */
  beats: boolean;
  /** Slices a backup's machine replays per tick at most (the primary's runs one). */
  backupSlicesPerTick: number;
}

export function simOptionsFromSeed(seed: number, ticks = 3000): SimOptions {
  const r = new SeededRandom(seed ^ 0x5eed);
  return {
    seed,
    ticks,
    dropRate: r.chance(0.5) ? r.next() * 0.05 : 0,
    duplicateRate: r.chance(0.3) ? r.next() * 0.05 : 0,
    delayMaxTicks: r.int(1, 20),
    killRate: r.chance(0.7) ? r.next() * 0.002 : 0,
    pauseRate: r.chance(0.4) ? r.next() * 0.001 : 0,
    joinRate: r.chance(0.5) ? 0.6 : 0,
    partitionRate: r.chance(0.4) ? r.next() * 0.002 : 0,
    partitionMaxTicks: r.int(50, 1500),
    arbiterOutageRate: r.chance(0.3) ? r.next() * 0.001 : 0,
    consoleDropRate: r.chance(0.5) ? r.next() * 0.01 : 0,
    diskEvery: r.int(4, 20),
    diskLatencyMaxTicks: r.int(1, 8),
    diskOutageRate: r.chance(0.3) ? r.next() * 0.002 : 0,
    powerOnLogEntriesMax: r.chance(0.5) ? r.int(0, 300) : defaultLogRetention.powerOnLogEntriesMax,
    // drawn after the others, so that every other option of a seed stays what it was
    newcomerRate: r.chance(0.5) ? r.next() * 0.004 : 0,
    leasedArbiter: r.chance(0.5),
    stallRate: r.chance(0.3) ? r.next() * 0.002 : 0,
    stallMaxTicks: r.int(100, 1000),
    beats: true,
    backupSlicesPerTick: r.chance(0.2) ? 1 : 5,
  };
}

/** A seed's options with no fault at all (a test then turns on the ones it is about). */
export function simOptionsWithoutFaults(seed: number, ticks = 3000): SimOptions {
  const none = { dropRate: 0, duplicateRate: 0, killRate: 0, pauseRate: 0, partitionRate: 0, arbiterOutageRate: 0, consoleDropRate: 0, diskOutageRate: 0, newcomerRate: 0, stallRate: 0 };
  return { ...simOptionsFromSeed(seed, ticks), ...none };
}
