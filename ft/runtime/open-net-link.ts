/** Opening the host link a `--net` spec names (net-link.ts says what a link does). */
import type { Logger } from "pino";
import type { NetLink, NetLinkOptions } from "./net-link.js";
import type { NetSpec } from "./net-spec.js";
import { PasstLink } from "./passt-link.js";
import { TapLink } from "./tap-link.js";

/** The link for a spec (undefined for none). Call `start()` to bring it up. */
export function makeNetLink(spec: NetSpec, options: NetLinkOptions): NetLink | undefined {
  switch (spec.mode) {
    case "none":
      return undefined;
    case "user":
    case "passt":
      return new PasstLink(spec, options);
    case "tap":
      return new TapLink(spec, options);
  }
}

/**
 * A link for a machine run by one process (run, record): frames from the host go to `deliver` (the
 * machine's NIC), and the caller sends the machine's frames with `link.send`. Undefined for none.
 */
export function startNetLink(spec: NetSpec | undefined, logger: Logger, deliver: (frames: Uint8Array[]) => void): NetLink | undefined {
  const link = spec ? makeNetLink(spec, { logger, onFrames: deliver }) : undefined;
  link?.start();
  if (link && spec?.mode === "user" && spec.forwards.length > 0) {
    link.log.info({ forwards: spec.forwards.map((f) => `127.0.0.1:${f.host} -> guest:${f.guest}`) }, "host ports forwarded to the guest");
  }
  return link;
}

