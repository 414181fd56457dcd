/**
 * Arbiter: the atomic test-and-set of the next epoch that prevents split brain (VMware FT §2.3).
 * Before going live (a backup) or going on alone (a primary whose backup is silent), a side must win
 * `claim(epoch)`; exactly one claimant of an epoch wins. `undefined` means the arbiter could not be
 * reached: nobody may go live until it answers.
 */
export interface Arbiter {
  claim(epoch: number, nodeId: string): Promise<boolean | undefined>;
  /** The highest epoch claimed so far (0 if none), or undefined if unreachable. */
  current(): Promise<number | undefined>;
}
