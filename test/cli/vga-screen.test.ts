// A guest whose only console is the VGA text screen (disk-images/vga: a multiboot kernel that draws
// at 0xB8000 and echoes PS/2 keys): `lockstep run --screen` on a real terminal (tmux) shows what the
// machine's text buffer holds, typed keys reach the guest's keyboard, and the same keys given to a
// machine in this process leave the same screen.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { cliPath } from "../support/cli.js";
import { TmuxSession } from "../support/tmux.js";
import { paneScreen, vgaScreenAfter } from "../support/vga.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-vga-test-"));
const sessions: TmuxSession[] = [];
afterAll(() => {
  for (const s of sessions) s.kill();
  rmSync(dir, { recursive: true, force: true });
});

const typed = "hello vga\nline two";

describe("the VGA text screen", () => {
  it("lockstep run --screen shows what the guest's text buffer holds, and typed keys reach its keyboard", async () => {
    const lines = await vgaScreenAfter(typed);
    expect(lines).toHaveLength(25);
    expect(lines[0]).toBe(" lockstep VGA test: this guest has no serial console");
    expect(lines).toContain("hello vga");
    expect(lines).toContain("line two");

    const t = new TmuxSession([process.execPath, cliPath, "run", "--image", "vga", "--screen"], { cwd: packageRoot(), env: { LOCKSTEP_LOG_LEVEL: "warn" } });
    sessions.push(t);
    await t.waitFor((s) => s.includes("type here:"), 60_000, "the guest's screen");
    // typed as a person would: one key at a time, Enter as the terminal sends it (CR)
    t.type(typed.replace("\n", "\r"));
    const shown = await t.waitFor((s) => s.includes("line two"), 30_000, "the typed text on the screen");
    expect(paneScreen(shown)).toEqual(lines);
    t.key("C-]");
    await t.waitFor(() => t.exitStatus() !== undefined, 30_000, "lockstep to exit");
    expect(t.exitStatus()).toBe(0);
  }, 180_000);
});
