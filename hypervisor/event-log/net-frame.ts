/**
 * Network input: an Ethernet frame for the guest's NIC. Record: frames from the host link are queued
 * as they arrive and logged at a slice boundary when the NIC's receive ring has room for them (the
 * recorder paces them, so the ring never overflows because of how fast the host delivered);
 * replay: the frame is delivered to the NIC at exactly that boundary. Frames the guest sends are
 * output, not log entries: they come out of every machine that follows the log alike.
 */
import type { EntryCodec } from "./log-entry.js";

export interface NetFrameEntry {
  kind: "net";
  slice: number;
  icount: number;
  /** The frame from the destination MAC on, without preamble or FCS. */
  data: Uint8Array;
}

/** An Ethernet header. */
export const frameBytesMin = 14;
/** 1500 bytes of payload, a header and a VLAN tag: the largest frame a NIC with a 1500 MTU takes. */
export const frameBytesMax = 1518;

export const netFrame: EntryCodec<NetFrameEntry> = {
  kind: "net",
  code: 9,
  encodeFields: (e) => [e.data],
  decodeFields(slice, icount, [data]) {
    if (!(data instanceof Uint8Array) || data.length < frameBytesMin || data.length > frameBytesMax) {
      throw `frame must be ${frameBytesMin} to ${frameBytesMax} bytes`;
    }
    // a plain copy: msgpackr yields Buffers that view the whole frame
    return { kind: "net", slice, icount, data: new Uint8Array(data) };
  },
};
