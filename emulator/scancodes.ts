/**
 * Typed characters as PS/2 keyboard scancodes (set 1, what v86's 8042 delivers with translation on):
 * for a guest whose console is the VGA screen and the keyboard. Each character becomes the key's
 * make and break codes, wrapped in Shift (0x2A / 0xAA) where a US keyboard needs it. Characters no
 * US key types are left out.
 */
const unshifted = "\x1b1234567890-=\x08\tqwertyuiop[]\r\0asdfghjkl;'`\0\\zxcvbnm,./";
const shifted = "\x1b!@#$%^&*()_+\x08\tQWERTYUIOP{}\r\0ASDFGHJKL:\"~\0|ZXCVBNM<>?";
const leftShift = 0x2a;

/** Scancode (make) of a character and whether Shift is held, or undefined. */
function keyOf(ch: string): { code: number; shift: boolean } | undefined {
  if (ch === " ") return { code: 0x39, shift: false };
  if (ch === "\n") return { code: 0x1c, shift: false };
  if (ch === "\x7f") return { code: 0x0e, shift: false }; // a terminal's Backspace
  if (ch === "\0") return undefined;
  let i = unshifted.indexOf(ch);
  if (i >= 0) return { code: i + 1, shift: false };
  i = shifted.indexOf(ch);
  if (i >= 0) return { code: i + 1, shift: true };
  return undefined;
}

export function scancodesFor(text: string): Uint8Array {
  const out: number[] = [];
  for (const ch of text) {
    const k = keyOf(ch);
    if (!k) continue;
    if (k.shift) out.push(leftShift);
    out.push(k.code, k.code | 0x80);
    if (k.shift) out.push(leftShift | 0x80);
  }
  return Uint8Array.from(out);
}

/**
 * What a terminal sends for keys that type no character (xterm's sequences), as scancodes: arrows,
 * Home/End, Insert/Delete, PgUp/PgDn (extended: 0xE0 before make and break), F1–F12.
 */
const terminalKeys: Array<[string, number, boolean]> = [
  ["\x1b[A", 0x48, true],
  ["\x1b[B", 0x50, true],
  ["\x1b[C", 0x4d, true],
  ["\x1b[D", 0x4b, true],
  ["\x1bOA", 0x48, true],
  ["\x1bOB", 0x50, true],
  ["\x1bOC", 0x4d, true],
  ["\x1bOD", 0x4b, true],
  ["\x1b[H", 0x47, true],
  ["\x1b[F", 0x4f, true],
  ["\x1bOH", 0x47, true],
  ["\x1bOF", 0x4f, true],
  ["\x1b[1~", 0x47, true],
  ["\x1b[4~", 0x4f, true],
  ["\x1b[2~", 0x52, true],
  ["\x1b[3~", 0x53, true],
  ["\x1b[5~", 0x49, true],
  ["\x1b[6~", 0x51, true],
  ["\x1bOP", 0x3b, false],
  ["\x1bOQ", 0x3c, false],
  ["\x1bOR", 0x3d, false],
  ["\x1bOS", 0x3e, false],
  ["\x1b[15~", 0x3f, false],
  ["\x1b[17~", 0x40, false],
  ["\x1b[18~", 0x41, false],
  ["\x1b[19~", 0x42, false],
  ["\x1b[20~", 0x43, false],
  ["\x1b[21~", 0x44, false],
  ["\x1b[23~", 0x57, false],
  ["\x1b[24~", 0x58, false],
];
const leftCtrl = 0x1d;

/**
 * What a terminal (or the web view, which speaks the same) sends, as scancodes: characters as
 * `scancodesFor`, the escape sequences of arrows, editing and function keys as those keys, and
 * control characters other than Tab, Enter, Backspace and Esc as Ctrl with their letter.
 */
export function scancodesForTerminal(input: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < input.length; ) {
    const seq = input[i] === "\x1b" ? terminalKeys.find(([s]) => input.startsWith(s, i)) : undefined;
    if (seq) {
      const [s, code, extended] = seq;
      out.push(...(extended ? [0xe0, code, 0xe0, code | 0x80] : [code, code | 0x80]));
      i += s.length;
      continue;
    }
    const c = input.charCodeAt(i);
    if (c >= 1 && c <= 26 && ![8, 9, 10, 13].includes(c)) {
      const letter = scancodesFor(String.fromCharCode(c + 96));
      out.push(leftCtrl, ...letter, leftCtrl | 0x80);
    } else out.push(...scancodesFor(input[i]!));
    i++;
  }
  return Uint8Array.from(out);
}
