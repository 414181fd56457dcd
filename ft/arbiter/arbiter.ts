/**
 * Arbiter: the atomic test-and-set of the next epoch that prevents split brain (VMware FT §2.3).
 * Before going live (a backup) or going on alone (a primary whose backup is silent), a side must win
 * `claim(epoch)`; exactly one claimant of an epoch wins. `undefined` means the arbiter could not be
 * reached: nobody may go live until it answers.
 */
/**
 * What renewing a hold answered: held for `leaseMs` from when the call began; a newer epoch exists;
 * or the arbiter's newest epoch is older than the node's (its data was lost: a person must look).
 */
export type ArbiterHold = { type: "held"; leaseMs: number } | { type: "newer"; epoch: number } | { type: "forgotten"; epoch: number };

export interface Arbiter {
  /**
   * `supersedes`: a backup names the primary it followed, whose hold it may take over at once; an
   * arbiter with holds (etcd) answers undefined ("not yet") while any other node holds the epoch.
   */
  claim(epoch: number, nodeId: string, supersedes?: string): Promise<boolean | undefined>;
  /** The highest epoch claimed so far (0 if none), or undefined if unreachable. */
  current(): Promise<number | undefined>;
  /**
   * What names this arbiter for every node that uses it (a file arbiter's directory holds a random
   * id made once): both nodes of a pair must name the same, or each could win the same epoch at its
   * own. Undefined if unreachable.
   */
  identity(): Promise<string | undefined>;
  /** Records where a node of this arbiter's pair listens (for `lockstep primary` to find a pair already running). */
  announce(nodeId: string, url: string): Promise<void>;
  /** Where the nodes announced so far listen (some may be gone). */
  announced(): Promise<Array<{ nodeId: string; url: string }>>;
  /**
   * Arbiters with a lease (etcd): renews the hold of `nodeId` on `epoch`, which it won. A primary
   * releases output and disk writes only while its hold lasts. Undefined if unreachable (or the
   * hold cannot be confirmed). Absent: holding needs no renewal (the file arbiter).
   */
  hold?(nodeId: string, epoch: number): Promise<ArbiterHold | undefined>;
  /** Arbiters with holds: the node holding the newest epoch now (null: none), undefined if unreachable. */
  holder?(): Promise<string | null | undefined>;
  /** Lets go of what the node holds at the arbiter (leases, connections). */
  close?(): Promise<void>;
}

/** What a primary asks of the standbys: join me (from a checkpoint). */
export interface JoinWanted {
  primary: string;
  url: string;
  epoch: number;
}

/**
 * Standbys (etcd): spare hosts registered with a pair's arbiter. A primary that has run unprotected
 * for a moment posts that it wants a backup; exactly one standby takes the request and joins it.
 */
export interface StandbyBoard {
  /** Primary: a backup is wanted (the post goes with the primary's lease). */
  wantBackup(want: JoinWanted): Promise<void>;
  /** Primary: protected again; the post and the chosen standby's claim are cleared. */
  backupFound(): Promise<void>;
  /** Standby: registers (with its lease) and renews; undefined if unreachable. */
  registerStandby(nodeId: string, url: string): Promise<boolean | undefined>;
  /** Standby: takes the posted request if no other standby has; what to join, or undefined. */
  takeJoin(nodeId: string): Promise<JoinWanted | undefined>;
  /** Standby: gives back a request it took and will not serve. */
  giveBackJoin(): Promise<void>;
}

export function isStandbyBoard(a: Arbiter): a is Arbiter & StandbyBoard {
  return typeof (a as Partial<StandbyBoard>).takeJoin === "function";
}
