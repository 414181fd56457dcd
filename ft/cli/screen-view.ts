/**
 * The guest's VGA text screen on the terminal (`lockstep run --screen`, `lockstep console --screen`,
 * `lockstep demo --screen`): looked at a few times a second — a view of the machine, it must not slow
 * the guest — and redrawn only when it changed. Typed keys go to the guest's keyboard as scancodes.
 */
import { screenAnsi, screenFromJson, type TextScreen } from "../../emulator/text-screen.js";
import { getJson } from "../runtime/get-json.js";

/** How often the screen is looked at. */
export const screenIntervalMs = 250;

/** Draws the screen `read` gives (undefined: none now) whenever it changed. */
export function showScreen(read: () => Promise<TextScreen | undefined>, write: (ansi: string) => void): { stop(): void } {
  let last: Uint16Array | undefined;
  let lastCursor = "";
  let busy = false;
  write("\x1b[2J");
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    read()
      .then((s) => {
        if (!s) return;
        const cursor = JSON.stringify(s.cursor);
        if (last && cursor === lastCursor && last.length === s.cells.length && last.every((c, i) => c === s.cells[i])) return;
        last = s.cells;
        lastCursor = cursor;
        write(screenAnsi(s));
      })
      .catch(() => {})
      .finally(() => (busy = false));
  }, screenIntervalMs);
  return { stop: () => clearInterval(timer) };
}

/** A node's screen over HTTP (GET /screen with the console credential); undefined when it has none (yet). */
export function nodeScreen(url: string, token: string, ca?: Buffer): Promise<TextScreen | undefined> {
  const u = new URL("/screen", url.replace(/^ws/, "http"));
  return getJson(u, { token, ...(ca ? { ca } : {}) }).then(screenFromJson, () => undefined);
}
