/**
 * LockstepError: every operating error lockstep reports to a user (bad input, missing files,
 * divergence, protocol violations) carries a stable code, a sentence-case message that quotes the
 * offending values, and optionally what the user can do about it. Programmer errors stay plain
 * `Error`s (assertions); they are bugs, not inputs.
 */

/** Stable error codes. Never rename one: scripts and tests match on them. */
export const ErrorCode = {
  imageUnknown: "LOCKSTEP_ERR_IMAGE_UNKNOWN",
  imageMissing: "LOCKSTEP_ERR_IMAGE_MISSING",
  imageCorrupt: "LOCKSTEP_ERR_IMAGE_CORRUPT",
  configInvalid: "LOCKSTEP_ERR_CONFIG_INVALID",
  memoryTooSmall: "LOCKSTEP_ERR_MEMORY_TOO_SMALL",
  diskUnreadable: "LOCKSTEP_ERR_DISK_UNREADABLE",
  diskUnwritable: "LOCKSTEP_ERR_DISK_UNWRITABLE",
  diskToolMissing: "LOCKSTEP_ERR_DISK_TOOL_MISSING",
  diskBackend: "LOCKSTEP_ERR_DISK_BACKEND",
  diskMismatch: "LOCKSTEP_ERR_DISK_MISMATCH",
  checkpointCorrupt: "LOCKSTEP_ERR_CHECKPOINT_CORRUPT",
  usage: "LOCKSTEP_ERR_USAGE",
  pairRunning: "LOCKSTEP_ERR_PAIR_RUNNING",
  logMissing: "LOCKSTEP_ERR_LOG_MISSING",
  logTruncated: "LOCKSTEP_ERR_LOG_TRUNCATED",
  logCorrupt: "LOCKSTEP_ERR_LOG_CORRUPT",
  logVersion: "LOCKSTEP_ERR_LOG_VERSION",
  logMismatch: "LOCKSTEP_ERR_LOG_MISMATCH",
  divergence: "LOCKSTEP_ERR_DIVERGENCE",
  inputScript: "LOCKSTEP_ERR_INPUT_SCRIPT",
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

export class LockstepError extends Error {
  override readonly name = "LockstepError";
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly hint?: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
  }

  /** One line for a terminal: code, message, hint. */
  toLine(): string {
    return `${this.code}: ${this.message}${this.hint ? ` (${this.hint})` : ""}`;
  }
}

export function isLockstepError(e: unknown): e is LockstepError {
  return e instanceof LockstepError;
}
