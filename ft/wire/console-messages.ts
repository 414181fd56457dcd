/**
 * The console protocol (a WebSocket on whichever host is live). Output is a byte stream with
 * absolute offsets; input carries per-client sequence numbers. A client that reconnects (to the same
 * host or, after a failover, to the new primary) says how much output it has and resends input not
 * yet acknowledged, so that no byte is lost or repeated and acknowledged input is applied once.
 *
 *   client -> server  attach  {clientId, offset}        resume output from this offset
 *   client -> server  input   {seq, data, keys?}        seq: 1, 2, 3... per client; keys: data are PS/2
 *                                                       scancodes for the keyboard (the VGA screen's
 *                                                       console), at most 256; otherwise serial bytes
 *   server -> client  output  {offset, data}            bytes [offset, offset + n) of the stream
 *   server -> client  inack   {seq}                     input through seq is applied and protected
 *   server -> client  status  {role, epoch, live}       live: false means "try another host"
 */
import { bytes, count, oneOf, openEnvelope, seal, str, type Fields } from "./envelope.js";

export const consoleInputBytesMax = 4096;
/**
 * Scancodes in one keys input at most: one keyboard log entry (keyboardChunkBytesMax; not imported:
 * the web view loads this module in the browser, which is served none of the hypervisor's).
 */
export const consoleKeysBytesMax = 256;
export const consoleOutputBytesMax = 256 * 1024;

export type ConsoleClientMessage =
  | { type: "attach"; clientId: string; offset: number }
  | { type: "input"; seq: number; data: Uint8Array; keys?: true };

export type ConsoleServerMessage =
  | { type: "output"; offset: number; data: Uint8Array }
  | { type: "inack"; seq: number }
  | { type: "status"; role: "primary" | "backup" | "halted"; epoch: number; live: boolean };

export function encodeConsoleMessage(m: ConsoleClientMessage | ConsoleServerMessage): Uint8Array {
  return seal(m as unknown as Fields);
}

export function decodeConsoleClientMessage(b: Uint8Array): ConsoleClientMessage {
  const f = openEnvelope(b, ["attach", "input"] as const);
  if (f.type === "attach") return { type: "attach", clientId: str(f, "clientId", 64), offset: count(f, "offset") };
  if (f.keys === true) return { type: "input", seq: count(f, "seq"), data: bytes(f, "data", consoleKeysBytesMax), keys: true };
  return { type: "input", seq: count(f, "seq"), data: bytes(f, "data", consoleInputBytesMax) };
}

export function decodeConsoleServerMessage(b: Uint8Array): ConsoleServerMessage {
  const f = openEnvelope(b, ["output", "inack", "status"] as const);
  switch (f.type) {
    case "output":
      return { type: "output", offset: count(f, "offset"), data: bytes(f, "data", consoleOutputBytesMax) };
    case "inack":
      return { type: "inack", seq: count(f, "seq") };
    case "status":
      return { type: "status", role: oneOf(f, "role", ["primary", "backup", "halted"] as const), epoch: count(f, "epoch"), live: f.live === true };
  }
}
