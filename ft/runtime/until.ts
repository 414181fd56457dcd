/**
 * `until`: polls a condition until it holds or a deadline passes. The demo, the benchmarks and the
 * integration tests all wait this way on a guest's console output or on a node's /status.
 */

/**
 * Resolves once `check` returns true; rejects after `timeoutMs` with "timed out ... waiting for
 * WHAT". `what` may be a function so that costly descriptions (output tails, a node's stderr) are
 * built only on a timeout. A check that throws counts as "not yet": checks usually poll the /status
 * of a node that is still starting or has just been killed; the last such error is in the message.
 */
export async function until(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string), intervalMs = 20): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    let failure: unknown;
    try {
      if (await check()) return;
    } catch (e) {
      failure = e;
    }
    if (performance.now() >= deadline) {
      const description = typeof what === "string" ? what : what();
      const last = failure === undefined ? "" : ` (the last check threw: ${failure instanceof Error ? failure.message : String(failure)})`;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${description}${last}`);
    }
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}
