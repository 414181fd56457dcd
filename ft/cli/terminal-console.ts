/**
 * The terminal as the guest's serial console: stdin in raw mode (when it is a TTY) forwards every
 * byte to the guest, the guest's bytes go to stdout, and the escape key (Ctrl-], as in telnet)
 * ends the session instead of reaching the guest.
 */
export const escapeByte = 0x1d; // Ctrl-]
export const escapeKeyName = "Ctrl-]";

export interface TerminalConsole {
  write(bytes: Uint8Array): void;
  close(): void;
}

export function attachTerminal(onInput: (bytes: Uint8Array) => void, onEscape: () => void): TerminalConsole {
  const stdin = process.stdin;
  const raw = stdin.isTTY === true;
  if (raw) stdin.setRawMode(true);
  const onData = (chunk: Buffer) => {
    const at = chunk.indexOf(escapeByte);
    if (at >= 0) {
      if (at > 0) onInput(new Uint8Array(chunk.subarray(0, at)));
      onEscape();
      return;
    }
    onInput(new Uint8Array(chunk));
  };
  stdin.on("data", onData);
  stdin.resume();
  return {
    write: (bytes) => {
      process.stdout.write(bytes);
    },
    close: () => {
      stdin.off("data", onData);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
    },
  };
}
