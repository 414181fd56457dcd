/**
 * Heartbeat datagrams: the second path between a primary and its backup (VMware FT §2.3 uses UDP
 * heartbeats beside the logging traffic). The logging channel is one TCP connection; on a lossy link a
 * lost retransmission stalls it for 200 ms, then 400 ms, ... — longer than the failure timeout — while
 * both nodes are fine. A datagram is never held behind another, so a peer whose datagrams still arrive
 * is alive and only its channel is stalled (PeerHeard).
 *
 * A datagram is sent to the peer with every heartbeat, on UDP at the node's own port number:
 *
 *   "LSHB"  version (u8, 1)  epoch (u32 BE)  at (f64 BE: sender's clock, ms)
 *   nodeId length (u8)  nodeId (UTF-8)  mac (16 bytes: HMAC-SHA256 of all before, keyed with the peer token)
 *
 * The MAC keeps anyone without the peer token from faking a live peer; `at` must grow from one datagram
 * of a node to the next, so a captured datagram cannot be replayed. At worst a forged stream could only
 * delay failure detection to the channel timeout: the channel's own silence still counts.
 */
import { createHmac, timingSafeEqual } from "node:crypto";

const magic = Buffer.from("LSHB");
const version = 1;
const macBytes = 16;
const fixedBytes = magic.length + 1 + 4 + 8 + 1;
/** Node ids are at most this many UTF-8 bytes in a datagram. */
export const beatNodeIdBytesMax = 255;

export interface PeerBeat {
  nodeId: string;
  epoch: number;
  at: number;
}

function mac(key: string, bytes: Uint8Array): Buffer {
  return createHmac("sha256", key).update(bytes).digest().subarray(0, macBytes);
}

export function encodePeerBeat(beat: PeerBeat, key: string): Buffer {
  const id = Buffer.from(beat.nodeId, "utf8");
  if (id.length > beatNodeIdBytesMax) throw new RangeError(`node id longer than ${beatNodeIdBytesMax} bytes`);
  const b = Buffer.alloc(fixedBytes + id.length + macBytes);
  magic.copy(b, 0);
  b.writeUInt8(version, 4);
  b.writeUInt32BE(beat.epoch >>> 0, 5);
  b.writeDoubleBE(beat.at, 9);
  b.writeUInt8(id.length, 17);
  id.copy(b, fixedBytes);
  mac(key, b.subarray(0, fixedBytes + id.length)).copy(b, fixedBytes + id.length);
  return b;
}

/** The datagram's beat, or why it is refused (not a beat, another version, a bad MAC). */
export function decodePeerBeat(b: Buffer, key: string): PeerBeat | { refused: string } {
  if (b.length < fixedBytes + macBytes || !b.subarray(0, 4).equals(magic)) return { refused: "not a heartbeat datagram" };
  if (b.readUInt8(4) !== version) return { refused: `heartbeat datagram version ${b.readUInt8(4)} (this node speaks ${version})` };
  const idLength = b.readUInt8(17);
  if (b.length !== fixedBytes + idLength + macBytes) return { refused: "heartbeat datagram of the wrong length" };
  const expected = mac(key, b.subarray(0, fixedBytes + idLength));
  if (!timingSafeEqual(expected, b.subarray(fixedBytes + idLength))) return { refused: "heartbeat datagram with a bad MAC (another peer token?)" };
  const at = b.readDoubleBE(9);
  if (!Number.isFinite(at)) return { refused: "heartbeat datagram without a time" };
  return { nodeId: b.subarray(fixedBytes, fixedBytes + idLength).toString("utf8"), epoch: b.readUInt32BE(5), at };
}
