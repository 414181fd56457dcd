/**
 * The VGA text screen as the guest left it: characters and attributes read from v86's VGA memory
 * the way its own redraw reads them (start address, line offset, split screen), plus the cursor.
 * Reading changes nothing in the machine (no port or memory access by the guest's rules), so it may
 * happen between any two slices, on the primary or the backup alike: their screens are identical.
 * In a graphics mode there is no text: `graphical` is true and the cells are empty.
 */

export interface TextScreen {
  cols: number;
  rows: number;
  /** Row by row: character | attribute << 8 (attribute: background << 4 | foreground, CGA colours). */
  cells: Uint16Array;
  cursor: { row: number; col: number; visible: boolean };
  graphical: boolean;
}

/** The parts of v86's VGAScreen read here (property names as in v86's vga.js). */
interface VgaDevice {
  graphical_mode: boolean;
  max_cols: number;
  max_rows: number;
  offset_register: number;
  start_address: number;
  line_compare: number;
  cursor_address: number;
  cursor_scanline_start: number;
  vga_memory: Uint8Array;
  scan_line_to_screen_row(line: number): number;
}

export function readTextScreen(vga: unknown): TextScreen {
  const v = vga as VgaDevice;
  const cols = v.max_cols;
  const rows = v.max_rows;
  if (v.graphical_mode || !(cols > 0 && rows > 0)) return { cols: 0, rows: 0, cells: new Uint16Array(0), cursor: { row: 0, col: 0, visible: false }, graphical: true };
  const cells = new Uint16Array(cols * rows);
  const split = v.scan_line_to_screen_row(v.line_compare);
  const rowOffset = Math.max(0, 2 * (2 * v.offset_register - cols));
  const mem = v.vga_memory;
  let addr = v.start_address << 1;
  for (let row = 0; row < rows; row++) {
    if (row === split) addr = 0;
    for (let col = 0; col < cols; col++) {
      cells[row * cols + col] = (mem[addr] ?? 0) | ((mem[addr | 1] ?? 0) << 8);
      addr += 2;
    }
    addr += rowOffset;
  }
  const lineCols = Math.max(cols, 2 * v.offset_register);
  const at = v.cursor_address - v.start_address;
  const cursor = { row: Math.floor(at / lineCols), col: at % lineCols, visible: (v.cursor_scanline_start & 0x20) === 0 && at >= 0 };
  if (cursor.row >= rows || cursor.col >= cols) cursor.visible = false;
  return { cols, rows, cells, cursor, graphical: false };
}

/** The screen's characters as text, one line per row (code page 437 shown as Unicode), trailing blanks cut. */
export function screenText(s: TextScreen): string {
  const lines: string[] = [];
  for (let row = 0; row < s.rows; row++) {
    let line = "";
    for (let col = 0; col < s.cols; col++) line += cp437(s.cells[row * s.cols + col]! & 0xff);
    lines.push(line.replace(/\s+$/, ""));
  }
  return lines.join("\n");
}

// code page 437: control range glyphs and the upper half, as the VGA font draws them
const low = " ☺☻♥♦♣♠•◘○◙♂♀♪♫☼►◄↕‼¶§▬↨↑↓→←∟↔▲▼";
const high =
  "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■ ";

export function cp437(code: number): string {
  if (code === 0) return " ";
  if (code < 32) return low[code]!;
  if (code === 127) return "⌂";
  if (code < 128) return String.fromCharCode(code);
  return high[code - 128]!;
}

/** ANSI colour numbers of the 16 CGA colours (black, blue, green, cyan, red, magenta, brown, light grey, then bright). */
const ansi = [30, 34, 32, 36, 31, 35, 33, 37, 90, 94, 92, 96, 91, 95, 93, 97];

/** The whole screen as ANSI escapes for a terminal: home, every row with its colours, the cursor placed (nothing else left on the terminal). */
export function screenAnsi(s: TextScreen): string {
  if (s.graphical) return "\x1b[H\x1b[2J(the guest's screen is in a graphics mode: the web view shows it)";
  let out = "\x1b[?25l\x1b[H";
  let last = -1;
  for (let row = 0; row < s.rows; row++) {
    for (let col = 0; col < s.cols; col++) {
      const cell = s.cells[row * s.cols + col]!;
      const attr = cell >> 8;
      if (attr !== last) {
        out += `\x1b[0;${ansi[attr & 15]};${ansi[(attr >> 4) & 7]! + 10}m`;
        last = attr;
      }
      out += cp437(cell & 0xff);
    }
    // the rest of the terminal's line and, after the last row, the rest of the terminal is cleared:
    // nothing else written there (a log line) stays beside or below the screen
    out += "\x1b[0m\x1b[K" + (row + 1 < s.rows ? "\r\n" : "\x1b[J");
    last = -1;
  }
  if (s.cursor.visible) out += `\x1b[${s.cursor.row + 1};${s.cursor.col + 1}H\x1b[?25h`;
  return out;
}

/** The screen as JSON travels (GET /screen): the cells little-endian in base64 (atob/btoa: the web view reads it too). */
export interface TextScreenJson {
  cols: number;
  rows: number;
  cells: string;
  cursor: { row: number; col: number; visible: boolean };
  graphical: boolean;
}

export function screenToJson(s: TextScreen): TextScreenJson {
  const bytes = new Uint8Array(s.cells.length * 2);
  s.cells.forEach((c, i) => {
    bytes[2 * i] = c & 0xff;
    bytes[2 * i + 1] = c >> 8;
  });
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return { cols: s.cols, rows: s.rows, cells: btoa(binary), cursor: s.cursor, graphical: s.graphical };
}

/** A screen read from JSON; throws on anything that is not one (sizes that do not add up, bad fields). */
export function screenFromJson(j: unknown): TextScreen {
  const o = j as Partial<TextScreenJson> | null;
  const size = (n: unknown) => typeof n === "number" && Number.isInteger(n) && n >= 0 && n <= 512;
  if (!o || !size(o.cols) || !size(o.rows) || typeof o.cells !== "string" || typeof o.graphical !== "boolean" || !o.cursor) throw new Error("not a screen");
  const bytes = Uint8Array.from(atob(o.cells), (c) => c.charCodeAt(0));
  if (bytes.length !== o.cols! * o.rows! * 2) throw new Error(`a screen of ${o.cols}x${o.rows} with ${bytes.length} bytes of cells`);
  const cells = new Uint16Array(o.cols! * o.rows!);
  for (let i = 0; i < cells.length; i++) cells[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
  const c = o.cursor;
  return { cols: o.cols!, rows: o.rows!, cells, cursor: { row: Number(c.row) | 0, col: Number(c.col) | 0, visible: c.visible === true }, graphical: o.graphical };
}
