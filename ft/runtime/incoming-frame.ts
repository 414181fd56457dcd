/**
 * Decoding a frame that arrived on a WebSocket (the peer link and the console server): a frame that
 * does not decode is reported with its stable wire error code and its socket is closed with 1008
 * (policy violation) and that code, so that it never reaches protocol logic.
 */
import type { WebSocket } from "ws";
import { WireError } from "../wire/envelope.js";

/** The decoded message, or undefined when the frame was rejected (`rejected` has been told why, the socket is closing). */
export function decodeIncoming<T>(ws: WebSocket, data: Buffer, decode: (bytes: Uint8Array) => T, rejected: (code: string, why: string) => void): T | undefined {
  try {
    return decode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  } catch (e) {
    const code = e instanceof WireError ? e.code : "LOCKSTEP_ERR_WIRE_UNDECODABLE";
    rejected(code, (e as Error).message);
    ws.close(1008, code);
    return undefined;
  }
}
