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
