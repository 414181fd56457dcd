/**
 * The guest's VGA screen in the web view: the live node's `GET /screen` (console credential), looked
 * at four times a second while its pane is open (a view of the machine: it must not slow the guest),
 * drawn as 80×25 cells in the 16 CGA colours with the cursor; in a VBE graphics mode, the picture
 * (`GET /screen.png`) instead. Keys pressed while the screen
 * has focus go to the guest's keyboard as scancodes, through the console's exactly-once input (the
 * same sequence numbers as typed bytes). The pane opens by itself when a guest shows text on its
 * screen and has written nothing to its serial console.
 */
import { scancodesForTerminal } from "../../../emulator/scancodes.js";
import { cp437, screenFromJson, screenText, type TextScreen } from "../../../emulator/text-screen.js";

/** CSS colours of the 16 CGA colours (black, blue, green, cyan, red, magenta, brown, light grey, then bright). */
const cga = ["#000", "#00a", "#0a0", "#0aa", "#a00", "#a0a", "#a50", "#aaa", "#555", "#55f", "#5f5", "#5ff", "#f55", "#f5f", "#ff5", "#fff"];
const intervalMs = 250;

/** What a terminal sends for keys that type no character (xterm's sequences; see scancodesForTerminal). */
const named: Record<string, string> = {
  Enter: "\r",
  Backspace: "\x7f",
  Tab: "\t",
  Escape: "\x1b",
  ArrowUp: "\x1b[A",
  ArrowDown: "\x1b[B",
  ArrowRight: "\x1b[C",
  ArrowLeft: "\x1b[D",
  Home: "\x1b[H",
  End: "\x1b[F",
  Insert: "\x1b[2~",
  Delete: "\x1b[3~",
  PageUp: "\x1b[5~",
  PageDown: "\x1b[6~",
  F1: "\x1bOP",
  F2: "\x1bOQ",
  F3: "\x1bOR",
  F4: "\x1bOS",
  F5: "\x1b[15~",
  F6: "\x1b[17~",
  F7: "\x1b[18~",
  F8: "\x1b[19~",
  F9: "\x1b[20~",
  F10: "\x1b[21~",
  F11: "\x1b[23~",
  F12: "\x1b[24~",
};

/** What a key press types, as a terminal would send it (undefined: not a key the guest gets). */
function keyText(e: KeyboardEvent): string | undefined {
  if (e.altKey || e.metaKey) return undefined;
  if (named[e.key] !== undefined) return named[e.key];
  if (e.key.length !== 1) return undefined;
  // Ctrl with a letter: the control character a terminal sends
  if (e.ctrlKey) return /^[a-z]$/i.test(e.key) ? String.fromCharCode(e.key.toLowerCase().charCodeAt(0) - 96) : undefined;
  return e.key;
}

export class WebScreen {
  private timer: ReturnType<typeof setInterval> | undefined;
  private busy = false;
  private last: TextScreen | undefined;
  private lastDrawn = "";
  private ticks = 0;

  constructor(
    private readonly pane: HTMLDetailsElement,
    private readonly el: HTMLElement,
    private readonly token: string,
    /** The node the console is attached to (its http(s) URL), if any. */
    private readonly node: () => string | undefined,
    /** Sends scancodes through the console; false when too much input is unacknowledged. */
    private readonly sendKeys: (scancodes: Uint8Array) => boolean,
    /** Whether the serial console has shown anything (if not, a guest with text on its screen opens the pane). */
    private readonly serialSilent: () => boolean,
  ) {
    el.addEventListener("keydown", (e) => {
      const text = keyText(e);
      if (text === undefined) return;
      e.preventDefault();
      const codes = scancodesForTerminal(text);
      if (codes.length > 0) this.sendKeys(codes);
    });
  }

  start(): void {
    this.timer = setInterval(() => void this.look(), intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.dropPicture();
  }

  /** The screen's text as last drawn (for tests). */
  text(): string {
    return this.last ? screenText(this.last) : "";
  }

  private async look(): Promise<void> {
    const node = this.node();
    // closed: one look a second, only to decide whether to open it for a guest without serial output
    const closedLook = this.ticks++ % 4 === 0 && this.serialSilent();
    if (this.busy || !node || (!this.pane.open && !closedLook)) return;
    this.busy = true;
    try {
      const r = await fetch(new URL("/screen", node), { headers: { authorization: `Bearer ${this.token}` }, cache: "no-store" });
      if (!r.ok) return;
      const s = screenFromJson(await r.json());
      this.last = s;
      if (!this.pane.open && !s.graphical && screenText(s).trim() !== "" && this.serialSilent()) this.pane.open = true;
      // a picture costs the machine a copy of its framebuffer: two a second
      if (this.pane.open && s.graphical) {
        if (this.ticks % 2 === 0) await this.drawPicture(node);
      }
      else if (this.pane.open) this.draw(s);
    } catch {
      // the node went away: the console follows the next one, and so does this
    } finally {
      this.busy = false;
    }
  }

  /** A graphics mode: the picture, or a note for a mode only the text views know (standard VGA graphics). */
  private async drawPicture(node: string): Promise<void> {
    const r = await fetch(new URL("/screen.png", node), { headers: { authorization: `Bearer ${this.token}` }, cache: "no-store" });
    if (r.status !== 200) {
      // 204: a graphics mode the node cannot picture (standard VGA: planar, mode 13h)
      const note = r.status === 204 ? "(the guest's screen is in a standard VGA graphics mode: not shown here)" : `(the node did not give the picture: HTTP ${r.status})`;
      this.dropPicture();
      if (this.lastDrawn !== note) this.el.textContent = note;
      this.lastDrawn = note;
      return;
    }
    const url = URL.createObjectURL(await r.blob());
    let img = this.el.querySelector("img");
    if (!img) {
      this.el.textContent = "";
      img = this.el.appendChild(document.createElement("img"));
    }
    const old = img.src;
    img.src = url;
    if (old.startsWith("blob:")) URL.revokeObjectURL(old);
    this.lastDrawn = "picture";
    this.pictures++;
  }

  /** Pictures drawn so far (for tests). */
  pictures = 0;

  /** The picture's object URL goes with it (a picture replaced by text, a note, or a new picture). */
  private dropPicture(): void {
    const img = this.el.querySelector("img");
    if (img?.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
  }

  private draw(s: TextScreen): void {
    let html = "";
    for (let row = 0; row < s.rows; row++) {
      let run = "";
      let attr = -1;
      const flush = () => {
        if (run) html += `<span style="color:${cga[attr & 15]};background:${cga[(attr >> 4) & 7]}">${run}</span>`;
        run = "";
      };
      for (let col = 0; col < s.cols; col++) {
        const cell = s.cells[row * s.cols + col]!;
        const a = cell >> 8;
        const cursor = s.cursor.visible && s.cursor.row === row && s.cursor.col === col;
        if (a !== attr || cursor) {
          flush();
          attr = a;
        }
        const ch = cp437(cell & 0xff).replace(/[&<>]/g, (c) => `&#${c.charCodeAt(0)};`);
        if (cursor) {
          html += `<span class="cursor" style="color:${cga[(a >> 4) & 7]};background:${cga[a & 15]}">${ch}</span>`;
          attr = -1;
        } else run += ch;
      }
      flush();
      html += "\n";
    }
    if (html === this.lastDrawn) return;
    this.dropPicture();
    this.lastDrawn = html;
    this.el.innerHTML = html;
  }
}
