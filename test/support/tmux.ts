/** Drives a program on a real pseudo-terminal through tmux (send-keys, capture-pane). */
import { execFileSync } from "node:child_process";
import { until } from "../../ft/runtime/until.js";

export class TmuxSession {
  readonly name = `lockstep-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;

  constructor(command: string[], options: { cwd: string; env?: Record<string, string> }) {
    const envArgs = Object.entries(options.env ?? {}).flatMap(([k, v]) => ["-e", `${k}=${v}`]);
    // A shell wraps the command to print its exit status on the pane when it ends.
    const quoted = command.map((a) => `'${a.replaceAll("'", `'\\''`)}'`).join(" ");
    const script = `${quoted}; echo "@@EXIT=$?@@"`;
    execFileSync("tmux", ["new-session", "-d", "-s", this.name, "-x", "160", "-y", "50", "-c", options.cwd, ...envArgs, "sh", "-c", script]);
    execFileSync("tmux", ["set-option", "-t", this.name, "remain-on-exit", "on"]);
  }

  screen(): string {
    return execFileSync("tmux", ["capture-pane", "-p", "-J", "-S", "-200", "-t", this.name], { encoding: "utf8" });
  }

  /** Literal text (no key names). */
  type(text: string): void {
    execFileSync("tmux", ["send-keys", "-t", this.name, "-l", text]);
  }

  key(name: string): void {
    execFileSync("tmux", ["send-keys", "-t", this.name, name]);
  }

  /** The program's exit status once it has exited (printed by the wrapping shell), else undefined. */
  exitStatus(): number | undefined {
    const m = this.screen().match(/@@EXIT=(\d+)@@/);
    return m ? Number(m[1]) : undefined;
  }

  /** Resolves with the screen once `predicate` holds for it. */
  async waitFor(predicate: (screen: string) => boolean, timeoutMs: number, what: string): Promise<string> {
    let screen = "";
    await until(() => predicate((screen = this.screen())), timeoutMs, () => `${what}; screen:\n${screen}`, 100);
    return screen;
  }

  kill(): void {
    try {
      execFileSync("tmux", ["kill-session", "-t", this.name], { stdio: "ignore" });
    } catch {
      // already gone
    }
  }
}
