/**
 * What a node checks at the arbiter before it starts: that the arbiter answers with its identity
 * (said at hello, so both nodes of a pair provably use the same one), and, for a new primary, that
 * no pair of this arbiter is still running.
 */
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { Arbiter } from "../arbiter/arbiter.js";
import { getJson } from "./get-json.js";

export async function arbiterIdentity(arbiter: Arbiter): Promise<string> {
  const id = await arbiter.identity();
  if (id === undefined) throw new LockstepError(ErrorCode.arbiter, "The arbiter cannot be reached", "check --arbiter or --shared-dir: the directory must exist and be writable; an etcd cluster must answer");
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
