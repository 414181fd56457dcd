/**
 * The one msgpack configuration for everything lockstep writes: log files, checkpoints and the
 * frames of the logging channel and the console protocol.
 *
 * Plain maps and arrays only (no msgpackr records or structures, no extension types), so every frame
 * decodes on its own, without state carried over from earlier frames, and any msgpack reader can
 * inspect a log or a captured frame. 64-bit integers decode as numbers: counters such as instruction
 * counts and byte offsets stay below 2^53 and the decoders validate them as numbers.
 */
import { Packr } from "msgpackr";

export const packr = new Packr({ useRecords: false, moreTypes: false, int64AsType: "number" });
