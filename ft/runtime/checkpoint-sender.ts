/**
 * Sends a checkpoint to a joining backup: compresses it (off this thread, in zlib's pool) and sends
 * it in parts of at most `checkpointPartBytes`, each a self-contained frame. The node core decides
 * when a checkpoint is wanted and what goes with it (where the log goes on, the console offset);
 * this only moves bytes, and says whether they went.
 */
import { WebSocket } from "ws";
import { encodeCheckpoint, type SessionCheckpoint } from "../../hypervisor/checkpoint.js";
import { checkpointPartBytes, encodePeerMessage } from "../wire/peer-messages.js";

export interface CheckpointSent {
  pauseMs: number;
  rawBytes: number;
  bytes: number;
  sendMs: number;
}

export async function sendCheckpoint(
  checkpoint: SessionCheckpoint,
  at: { epoch: number; first: number; console: number; inputs: Array<[string, number]>; consoleTail: Uint8Array },
  /** The connection at the time the checkpoint was taken, and whether it is still the peer's. */
  peer: WebSocket,
  stillPeer: () => boolean,
  countBytes: (n: number) => void,
): Promise<Omit<CheckpointSent, "pauseMs"> | { failed: string }> {
  const t0 = performance.now();
  let bytes: Buffer;
  try {
    bytes = await encodeCheckpoint(checkpoint);
  } catch (e) {
    return { failed: `checkpoint could not be encoded: ${(e as Error).message}` };
  }
  // the joiner reconnected or went away while the checkpoint was being compressed
  if (!stillPeer() || peer.readyState !== WebSocket.OPEN) return { failed: "joining backup's connection changed: the checkpoint is taken again" };
  const parts = Math.ceil(bytes.length / checkpointPartBytes);
  const slice = checkpoint.driver.slice;
  for (let part = 0; part < parts; part++) {
    const data = bytes.subarray(part * checkpointPartBytes, (part + 1) * checkpointPartBytes);
    const frame = encodePeerMessage({ type: "checkpoint", epoch: at.epoch, first: at.first, slice, part, parts, data, console: at.console, inputs: at.inputs, ...(part === 0 ? { consoleTail: at.consoleTail } : {}) });
    countBytes(frame.byteLength);
    peer.send(frame);
  }
  return { rawBytes: checkpoint.machine.memory.byteLength + checkpoint.machine.devices.byteLength, bytes: bytes.length, sendMs: performance.now() - t0 };
}
