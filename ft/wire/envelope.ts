/**
 * The wire envelope shared by the logging channel and the console protocol: every frame is one
 * msgpack map `{v, type, ...}` decoded on its own (no msgpackr records or structures: a reconnect
 * must not depend on earlier frames), bounded in size, and validated field by field. A frame that
 * fails is rejected with a stable code and never reaches protocol logic.
 */
import { describeValue } from "../../emulator/lockstep-error.js";
import { packr } from "../../hypervisor/msgpack.js";

export const wireVersion = 1;
/** Frames larger than this are rejected before decoding. */
export const wireFrameBytesMax = 8 * 2 ** 20;

export { packr }; // the repository-wide configuration, re-exported for the frame encoders and tests

export const WireErrorCode = {
  tooLarge: "LOCKSTEP_ERR_WIRE_TOO_LARGE",
  undecodable: "LOCKSTEP_ERR_WIRE_UNDECODABLE",
  version: "LOCKSTEP_ERR_WIRE_VERSION",
  malformed: "LOCKSTEP_ERR_WIRE_MALFORMED",
} as const;
export type WireErrorCode = (typeof WireErrorCode)[keyof typeof WireErrorCode];

export class WireError extends Error {
  override readonly name = "WireError";
  constructor(
    readonly code: WireErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export type Fields = Record<string, unknown>;

/** Decodes a frame to its fields, checking size, version and the type against `types`. */
export function openEnvelope<T extends string>(bytes: Uint8Array, types: readonly T[]): Fields & { type: T } {
  if (bytes.byteLength > wireFrameBytesMax) throw new WireError(WireErrorCode.tooLarge, `Frame of ${bytes.byteLength} bytes exceeds ${wireFrameBytesMax}`);
  let raw: unknown;
  try {
    raw = packr.unpack(bytes);
  } catch (e) {
    throw new WireError(WireErrorCode.undecodable, `Frame does not decode as msgpack: ${(e as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw) || raw instanceof Uint8Array) {
    throw new WireError(WireErrorCode.malformed, "Frame is not a map");
  }
  const f = raw as Fields;
  if (f.v !== wireVersion) throw new WireError(WireErrorCode.version, `Frame has version ${describeValue(f.v)}; this side speaks ${wireVersion}`);
  if (typeof f.type !== "string" || !(types as readonly string[]).includes(f.type)) {
    throw new WireError(WireErrorCode.malformed, `Unknown frame type ${describeValue(f.type)}`);
  }
  return f as Fields & { type: T };
}

export function seal(fields: Fields): Uint8Array {
  return packr.pack({ v: wireVersion, ...fields });
}

// Field validators: each returns the value or throws a WireError naming the field.
function malformed(type: string, field: string, want: string): never {
  throw new WireError(WireErrorCode.malformed, `Frame ${type}: field ${field} must be ${want}`);
}
export function count(f: Fields, field: string): number {
  const v = f[field];
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) malformed(String(f.type), field, "a non-negative integer");
  return v as number;
}
export function str(f: Fields, field: string, maxLength = 256): string {
  const v = f[field];
  if (typeof v !== "string" || v.length === 0 || v.length > maxLength) malformed(String(f.type), field, `a string of 1 to ${maxLength} characters`);
  return v as string;
}
export function bytes(f: Fields, field: string, maxBytes: number): Uint8Array {
  const v = f[field];
  if (!(v instanceof Uint8Array) || v.byteLength > maxBytes) malformed(String(f.type), field, `bytes (at most ${maxBytes})`);
  return new Uint8Array(v as Uint8Array);
}
export function list(f: Fields, field: string, maxItems: number): unknown[] {
  const v = f[field];
  if (!Array.isArray(v) || v.length > maxItems) malformed(String(f.type), field, `a list of at most ${maxItems} items`);
  return v as unknown[];
}
export function oneOf<T extends string>(f: Fields, field: string, values: readonly T[]): T {
  const v = f[field];
  if (!(values as readonly unknown[]).includes(v)) malformed(String(f.type), field, `one of ${values.join(", ")}`);
  return v as T;
}
