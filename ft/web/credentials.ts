/**
 * Credentials on a node's HTTP server: how a request carries one (a header, or a browser WebSocket's
 * subprotocol) and a comparison in constant time.
 */
import type { IncomingMessage } from "node:http";
import { timingSafeEqual } from "node:crypto";

export function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** The credential a request carries in a header: Authorization Bearer, or Basic (the password; any user name). */
export function requestCredential(req: IncomingMessage): string | undefined {
  const auth = req.headers.authorization ?? "";
  const bearer = /^Bearer (.+)$/.exec(auth)?.[1];
  if (bearer) return bearer;
  const basic = /^Basic (.+)$/.exec(auth)?.[1];
  if (basic) {
    const text = Buffer.from(basic, "base64").toString("utf8");
    const colon = text.indexOf(":");
    if (colon >= 0) return text.slice(colon + 1);
  }
  return undefined;
}

/** The credential a browser's WebSocket carries as a subprotocol `bearer.<base64url>`, if any. */
export function subprotocolCredential(req: IncomingMessage): string | undefined {
  for (const p of (req.headers["sec-websocket-protocol"] ?? "").split(",")) {
    const m = /^bearer\.([A-Za-z0-9_-]+)$/.exec(p.trim());
    if (m) return Buffer.from(m[1]!, "base64url").toString("utf8");
  }
  return undefined;
}

/** The subprotocol a browser's console WebSocket asks for beside its credential. */
export const consoleSubprotocol = "lockstep.console";
