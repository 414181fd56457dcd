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
  arbiter: "LOCKSTEP_ERR_ARBITER",
  logMissing: "LOCKSTEP_ERR_LOG_MISSING",
  logTruncated: "LOCKSTEP_ERR_LOG_TRUNCATED",
  logCorrupt: "LOCKSTEP_ERR_LOG_CORRUPT",
  logVersion: "LOCKSTEP_ERR_LOG_VERSION",
  logMismatch: "LOCKSTEP_ERR_LOG_MISMATCH",
  divergence: "LOCKSTEP_ERR_DIVERGENCE",
  inputScript: "LOCKSTEP_ERR_INPUT_SCRIPT",
  netMode: "LOCKSTEP_ERR_NET_MODE",
  netFrame: "LOCKSTEP_ERR_NET_FRAME",
  /** An ISO that is not an ISO 9660 image, or has no El Torito boot record. */
  isoInvalid: "LOCKSTEP_ERR_ISO_INVALID",
  /** A disk image to boot from without a boot sector (no 0x55AA signature). */
  diskNotBootable: "LOCKSTEP_ERR_DISK_NOT_BOOTABLE",
  /** A virtual address the guest's page tables do not map (a debugger's read). */
  addressUnmapped: "LOCKSTEP_ERR_ADDRESS_UNMAPPED",
  /** A position in a recording past its end (a debugger's `--at`). */
  pastEnd: "LOCKSTEP_ERR_PAST_END",
  /** What a debugger cannot do here (step user code, a slice that starts with disk I/O in flight). */
  debugUnsupported: "LOCKSTEP_ERR_DEBUG_UNSUPPORTED",
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

/**
 * A short description of a value decoded from untrusted bytes, for an error message: never throws
 * (a decoded map may carry keys such as `toString` that break `String(v)`) and never runs long.
 */
export function describeValue(v: unknown): string {
  switch (typeof v) {
    case "string":
      return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
    case "number":
    case "boolean":
    case "bigint":
    case "undefined":
      return String(v);
    default:
      if (v === null) return "null";
      if (v instanceof Uint8Array) return `${v.byteLength} bytes`;
      if (Array.isArray(v)) return `a list of ${v.length} items`;
      if (v instanceof Date) return "a timestamp";
      return "a map";
  }
}
