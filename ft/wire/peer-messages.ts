/**
 * The logging channel between a primary and its backup (README, "How it stays available"). Every message
 * carries the sender's epoch: a side ignores messages of another epoch, so a primary of an old epoch
 * never gets acks and can never release output (VMware FT §2.3).
 *
 *   backup  -> primary  hello     {epoch, nodeId, have, join?, arbiter?, url?, run?} have: log
 *                                  entries it already holds; join: start from a checkpoint of the
 *                                  running machine, not power-on; arbiter: the identity of the
 *                                  arbiter it uses (a primary using another one refuses it: close
 *                                  code 4004); run: an id of this backup's process (a hello of the
 *                                  same node id and another run is a restart, whatever `have` says)
 *   primary -> backup   checkpoint {epoch, first, slice, part, parts, data, console, inputs, consoleTail?}
 *                                  a compressed session checkpoint at boundary `slice`, in parts; the
 *                                  log continues with entry `first`; the console stream's offset
 *                                  there and the input seq applied per console client; consoleTail
 *                                  (part 0): the released output just before that offset
 *   primary -> backup   header    {epoch, nodeId, header, releasedThrough, checkpoint?}
 *                                  the log header (machine, clock, disk) and the slice through which
 *                                  output already left unprotected: the backup may take over only
 *                                  once its log is complete through it; checkpoint: the log this
 *                                  backup lacks is no longer held, a checkpoint comes instead
 *   primary -> backup   log       {epoch, first, entries}      entries [first, first + n) of the log
 *   backup  -> primary  ack       {epoch, have, complete, executed, echo?}
 *                                  have: entries held; complete: slice the log is complete through;
 *                                  executed: slices the backup has run; echo: see heartbeat
 *   both                heartbeat {epoch, nodeId, at?, echo?}
 *                                  at (primary): its clock (ms); echo (backup): the newest `at` it
 *                                  received — proof of when it last heard the primary (disk lease)
 */
import { decodeEntry, encodeEntry, type LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { validateHeader, type LogHeader } from "../../hypervisor/log-file.js";
import { bytes as bytesField, count, list, openEnvelope, seal, str, WireError, WireErrorCode, type Fields } from "./envelope.js";

export const logBatchEntriesMax = 4096;
/**
 * Entry bytes per log frame at most (by `entryBytes`); far below what a peer accepts
 * (`wireFrameBytesMax`), and one entry (a disk-read part is at most 256 KiB) always fits.
 */
export const logBatchBytesMax = 2 ** 20;
/** Bytes of checkpoint per message at most. */
export const checkpointPartBytes = 4 * 2 ** 20;
/** A checkpoint has at most this many parts (1 GiB). */
export const checkpointPartsMax = 256;
/** Console output sent along with a checkpoint at most (ending at its console offset). */
export const consoleTailBytesMax = 256 * 1024;

export type PeerMessage =
  | { type: "hello"; epoch: number; nodeId: string; have: number; join?: boolean; arbiter?: string; url?: string; run?: string }
  | {
      type: "checkpoint";
      epoch: number;
      first: number;
      slice: number;
      part: number;
      parts: number;
      data: Uint8Array;
      /** Console stream offset at the checkpoint, and the console input applied per client. */
      console: number;
      inputs: Array<[string, number]>;
      /** The released console output just before `console` (first part only; older peers omit it). */
      consoleTail?: Uint8Array;
    }
  | { type: "header"; epoch: number; nodeId: string; header: LogHeader; releasedThrough: number; checkpoint?: boolean }
  | { type: "log"; epoch: number; first: number; entries: LogEntry[] }
  | { type: "ack"; epoch: number; have: number; complete: number; executed: number; echo?: number }
  | { type: "heartbeat"; epoch: number; nodeId: string; at?: number; echo?: number };

const types = ["hello", "header", "log", "ack", "heartbeat", "checkpoint"] as const;

export function encodePeerMessage(m: PeerMessage): Uint8Array {
  switch (m.type) {
    case "log":
      return seal({ type: m.type, epoch: m.epoch, first: m.first, entries: m.entries.map(encodeEntry) });
    default:
      return seal(m as unknown as Fields);
  }
}

export function decodePeerMessage(bytes: Uint8Array): PeerMessage {
  const f = openEnvelope(bytes, types);
  const epoch = count(f, "epoch");
  switch (f.type) {
    case "hello": {
      if (f.join !== undefined && typeof f.join !== "boolean") throw new WireError(WireErrorCode.malformed, "Frame hello: field join must be a boolean");
      return { type: "hello", epoch, nodeId: str(f, "nodeId"), have: count(f, "have"), ...(f.join === true ? { join: true } : {}), ...(f.arbiter !== undefined ? { arbiter: str(f, "arbiter") } : {}), ...(f.url !== undefined ? { url: httpUrl(f) } : {}), ...(f.run !== undefined ? { run: str(f, "run") } : {}) };
    }
    case "checkpoint": {
      const parts = count(f, "parts");
      const part = count(f, "part");
      if (parts < 1 || parts > checkpointPartsMax || part >= parts) throw new WireError(WireErrorCode.malformed, `Frame checkpoint: part ${part} of ${parts}`);
      const inputs = list(f, "inputs", 10_000).map((p) => {
        if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== "string" || p[0].length > 64 || typeof p[1] !== "number" || !Number.isSafeInteger(p[1]) || p[1] < 0) {
          throw new WireError(WireErrorCode.malformed, "Frame checkpoint: inputs must be [client, seq] pairs");
        }
        return [p[0], p[1]] as [string, number];
      });
      return { type: "checkpoint", epoch, first: count(f, "first"), slice: count(f, "slice"), part, parts, data: new Uint8Array(bytesField(f, "data", checkpointPartBytes)), console: count(f, "console"), inputs, ...consoleTail(f) };
    }
    case "header": {
      let header: LogHeader;
      try {
        header = validateHeader(f.header, "Frame header: the primary's log");
      } catch (e) {
        throw new WireError(WireErrorCode.malformed, (e as Error).message);
      }
      if (f.checkpoint !== undefined && typeof f.checkpoint !== "boolean") throw new WireError(WireErrorCode.malformed, "Frame header: field checkpoint must be a boolean");
      return { type: "header", epoch, nodeId: str(f, "nodeId"), header, releasedThrough: count(f, "releasedThrough"), ...(f.checkpoint === true ? { checkpoint: true } : {}) };
    }
    case "log": {
      const first = count(f, "first");
      const raw = list(f, "entries", logBatchEntriesMax);
      const entries = raw.map((r, i) => {
        try {
          return decodeEntry(r, `${first + i} in a log frame`);
        } catch (e) {
          throw new WireError(WireErrorCode.malformed, (e as Error).message);
        }
      });
      return { type: "log", epoch, first, entries };
    }
    case "ack":
      return { type: "ack", epoch, have: count(f, "have"), complete: count(f, "complete"), executed: count(f, "executed"), ...optionalCount(f, "echo") };
    case "heartbeat":
      return { type: "heartbeat", epoch, nodeId: str(f, "nodeId"), ...optionalCount(f, "at"), ...optionalCount(f, "echo") };
  }
}

function consoleTail(f: Fields): { consoleTail?: Uint8Array } {
  if (f.consoleTail === undefined) return {};
  const tail = bytesField(f, "consoleTail", consoleTailBytesMax);
  if (tail.length > count(f, "console")) throw new WireError(WireErrorCode.malformed, "Frame checkpoint: consoleTail is longer than the console stream");
  return { consoleTail: tail };
}

/** A count field that may be absent (older peers do not send it). */
function optionalCount<K extends string>(f: Fields, key: K): { [k in K]?: number } {
  return f[key] === undefined ? {} : ({ [key]: count(f, key) } as { [k in K]: number });
}

/** The hello's `url`: where the backup serves its status and console, an http(s) address (the web view goes there). */
function httpUrl(f: Fields): string {
  const url = str(f, "url", 512);
  if (!/^https?:\/\/[^\s/?#]+\/?$/.test(url)) throw new WireError(WireErrorCode.malformed, `Frame hello: field url must be http(s)://host:port, not ${JSON.stringify(url.slice(0, 80))}`);
  return url;
}
