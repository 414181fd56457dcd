/**
 * Input scripts for `lockstep record --input FILE`: timed console input, one step per line.
 *
 *     # a comment
 *     wait "lockstep:/root# " [TIMEOUT_S]   wait until the guest prints this text (default 120 s)
 *     send "uname -a\r"                     type on the serial console (JSON string escapes)
 *     sendline "uname -a"                   the same, with a carriage return appended
 *     keys 1e 9e                            PS/2 scancodes, hexadecimal
 *     sleep 2.5                             wait this many seconds of host time
 *
 * The recording ends after the last step. Waits match text printed after the previous wait's match
 * (or after the start), so a prompt seen before a command cannot satisfy the wait that follows it.
 */
import { readFileSync } from "node:fs";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";

export type ScriptStep =
  | { op: "wait"; text: string; timeoutS: number; line: number }
  | { op: "send"; data: Uint8Array; line: number }
  | { op: "keys"; data: Uint8Array; line: number }
  | { op: "sleep"; seconds: number; line: number };

const defaultWaitTimeoutS = 120;

export function parseInputScript(text: string, where: string): ScriptStep[] {
  const steps: ScriptStep[] = [];
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    const s = raw.trim();
    if (!s || s.startsWith("#")) return;
    const bad = (why: string): never => {
      throw new LockstepError(ErrorCode.inputScript, `Input script ${where}, line ${line}: ${why}: ${JSON.stringify(s)}`);
    };
    const space = s.indexOf(" ");
    const op = space < 0 ? s : s.slice(0, space);
    const rest = space < 0 ? "" : s.slice(space + 1).trim();
    const str = (): [string, string] => {
      const m = rest.match(/^("(?:[^"\\]|\\.)*")\s*(.*)$/);
      if (!m) bad("expected a double-quoted string");
      try {
        return [JSON.parse(m![1]!) as string, m![2]!];
      } catch {
        return bad("bad string escape");
      }
    };
    switch (op) {
      case "wait": {
        const [text, after] = str();
        if (!text) bad("empty wait text");
        const timeoutS = after ? Number(after) : defaultWaitTimeoutS;
        if (!(timeoutS > 0)) bad("timeout must be a positive number of seconds");
        steps.push({ op: "wait", text, timeoutS, line });
        break;
      }
      case "send":
      case "sendline": {
        const [text, after] = str();
        if (after) bad("unexpected text after the string");
        steps.push({ op: "send", data: new TextEncoder().encode(op === "sendline" ? text + "\r" : text), line });
        break;
      }
      case "keys": {
        const codes = rest.split(/\s+/).filter(Boolean).map((h) => (/^[0-9a-fA-F]{1,2}$/.test(h) ? parseInt(h, 16) : bad(`"${h}" is not a hex scancode`)));
        if (codes.length === 0) bad("no scancodes");
        steps.push({ op: "keys", data: Uint8Array.from(codes), line });
        break;
      }
      case "sleep": {
        const seconds = Number(rest);
        if (!(seconds >= 0) || !Number.isFinite(seconds)) bad("sleep takes a number of seconds");
        steps.push({ op: "sleep", seconds, line });
        break;
      }
      default:
        bad(`unknown step "${op}" (wait, send, sendline, keys, sleep)`);
    }
  });
  return steps;
}

export function readInputScript(path: string): ScriptStep[] {
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    throw new LockstepError(ErrorCode.inputScript, `Input script ${path} cannot be read: ${(e as NodeJS.ErrnoException).code}`);
  }
  return parseInputScript(text, path);
}

export interface ScriptTarget {
  /** All guest output so far. */
  output(): string;
  /** Resolves when more output arrives (or after a short while). */
  outputChanged(): Promise<void>;
  sendSerial(data: Uint8Array): void;
  sendKeys(data: Uint8Array): void;
  sleep(ms: number): Promise<void>;
  nowMs(): number;
}

export async function runInputScript(steps: ScriptStep[], target: ScriptTarget, where: string): Promise<void> {
  let from = 0;
  for (const step of steps) {
    switch (step.op) {
      case "wait": {
        const deadline = target.nowMs() + step.timeoutS * 1000;
        for (;;) {
          const at = target.output().indexOf(step.text, from);
          if (at >= 0) {
            from = at + step.text.length;
            break;
          }
          if (target.nowMs() > deadline) {
            throw new LockstepError(
              ErrorCode.inputScript,
              `Input script ${where}, line ${step.line}: the guest did not print ${JSON.stringify(step.text)} within ${step.timeoutS} s`,
            );
          }
          await target.outputChanged();
        }
        break;
      }
      case "send":
        target.sendSerial(step.data);
        break;
      case "keys":
        target.sendKeys(step.data);
        break;
      case "sleep":
        await target.sleep(step.seconds * 1000);
        break;
    }
  }
}
