/**
 * What a node checks at the arbiter before it starts: that the arbiter answers with its identity
 * (said at hello, so both nodes of a pair provably use the same one), and, for a new primary, that
 * no pair of this arbiter is still running and that it wins its first epoch.
 */
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { Logger } from "pino";
import type { Arbiter } from "../arbiter/arbiter.js";
import { getJson } from "./get-json.js";

/** The error of an arbiter that does not answer when a node starts. */
export const arbiterUnreachable = () => new LockstepError(ErrorCode.arbiter, "The arbiter cannot be reached", "check --arbiter or --shared-dir: the directory must exist and be writable; an etcd cluster must answer");

export async function arbiterIdentity(arbiter: Arbiter): Promise<string> {
  const id = await arbiter.identity();
  if (id === undefined) throw arbiterUnreachable();
  return id;
}

/**
 * A second `lockstep primary` on the arbiter of a pair that is running would start a second guest
 * on the same disk (it wins the next epoch; the running primary notices only when it next claims
 * one). Any node of this arbiter that still answers as a primary, or as a backup that follows one
 * (epoch 1 or later), stops it.
 */
export async function refuseIfPairRunning(arbiter: Arbiter, ca: Buffer | undefined): Promise<void> {
  for (const { nodeId, url } of await arbiter.announced()) {
    const s = await getJson<{ role?: unknown; epoch?: unknown }>(new URL("/status", url), { timeoutMs: 1000, ...(ca ? { ca } : {}) }).catch(() => undefined);
    // a backup still at epoch 0 follows nobody yet (it may be this primary's own, started alongside)
    if (s && (s.role === "primary" || (s.role === "backup" && typeof s.epoch === "number" && s.epoch > 0))) {
      throw new LockstepError(ErrorCode.pairRunning, `A lockstep pair is already running on this arbiter: ${nodeId} at ${url} is its ${s.role} (epoch ${String(s.epoch)})`, "stop that pair first, or give this one its own --arbiter or --shared-dir (and disk)");
    }
  }
}

/** How long a new primary waits for another node's hold on the epoch to run out (a pair that just died). */
const startHoldWaitMs = 5000;

/**
 * A new primary claims the next epoch. On a leased arbiter a node that still holds the epoch (its
 * lease alive) means a pair is running there, even if this host cannot reach its nodes: after
 * waiting a lease's length for it to run out (a pair that just died), that is PAIR_RUNNING.
 */
export async function claimAtStart(arbiter: Arbiter, epoch: number, nodeId: string, log: Logger): Promise<void> {
  const deadline = performance.now() + startHoldWaitMs;
  for (let said = false; ; said = true) {
    const won = await arbiter.claim(epoch, nodeId);
    if (won === true) return;
    if (won === false) throw new LockstepError(ErrorCode.pairRunning, `Epoch ${epoch} was claimed by another node`, "another primary is starting on the same arbiter");
    const holder = arbiter.holder ? await arbiter.holder() : undefined;
    if (performance.now() >= deadline) {
      if (holder) throw new LockstepError(ErrorCode.pairRunning, `A lockstep pair is already running on this arbiter: ${holder} holds epoch ${epoch - 1} (its lease is alive)`, "stop that pair first, or give this one its own --arbiter prefix (and disk)");
      throw arbiterUnreachable();
    }
    if (!said && holder) log.warn({ holder, epoch: epoch - 1 }, "another node holds the epoch at the arbiter: waiting for its lease to run out");
    await new Promise((r) => setTimeout(r, 250));
  }
}
