/** The LockstepError `fn` throws (any other exception propagates; none at all fails the test). */
import { LockstepError } from "../../emulator/lockstep-error.js";

export function errorOf(fn: () => unknown): LockstepError {
  try {
    fn();
  } catch (e) {
    if (e instanceof LockstepError) return e;
    throw e;
  }
  throw new Error("expected a LockstepError");
}
