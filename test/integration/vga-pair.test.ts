// A guest whose only console is the VGA text screen (disk-images/vga) in a protected pair, watched
// with `lockstep console --screen` on a real terminal (tmux): the screen shown is what the live
// node's text buffer holds (GET /screen, which needs the console credential; the backup's is the
// same), keys typed there reach the guest's keyboard through the exactly-once console input path,
// and after the primary is SIGKILLed in the middle of typing, the console shows the new primary's
// screen: every key once, the same screen a machine in this process shows for the same keys; and a
// backup that joins the survivor from a checkpoint shows it too; F1 switches the guest to a graphics
// mode, whose picture the primary and the backup serve alike.
import { afterAll, describe, expect, it } from "vitest";
import { packageRoot } from "../../emulator/package-root.js";
import { screenFromJson, screenText } from "../../emulator/text-screen.js";
import { getJson } from "../../ft/runtime/get-json.js";
import type { NodeProcess } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";
import { cliPath } from "../support/cli.js";
import { TestCluster, token, untilProtected } from "../support/cluster.js";
import { TmuxSession } from "../support/tmux.js";
import { paneScreen, vgaScreenAfter } from "../support/vga.js";

const cluster = new TestCluster();
const sessions: TmuxSession[] = [];
afterAll(() => {
  for (const s of sessions) s.kill();
  cluster.stop();
});

const screenUrl = (node: string) => new URL("/screen", node.replace(/^ws/, "http"));
const screenOf = async (node: string) => screenText(screenFromJson(await getJson(screenUrl(node), { token })));
// the screen of a node that must have one now: a failure names the node and ends with its log
const screenNow = async (n: NodeProcess) => {
  try {
    return await screenOf(n.url);
  } catch (e) {
    throw new Error(`${n.name}'s screen: ${(e as Error).message}\n${n.name}: ${n.stderr.slice(-3000)}`);
  }
};

describe("the VGA screen of a pair", () => {
  it("lockstep console --screen shows the live node's screen, before and after a takeover; keys apply once", async () => {
    // how long each part took (printed: a slow run says where it waited)
    const t0 = performance.now();
    const took: string[] = [];
    const stage = (what: string) => took.push(`${what} ${Math.round(performance.now() - t0)} ms`);
    const expected = await vgaScreenAfter("hello vga\nline two");
    const a = await cluster.start("A", "primary", ["--image", "vga"]);
    // from a checkpoint: a backup replaying this idle guest's log from power-on replays its slices
    // about as fast as the primary makes new ones, and may take long to catch up (see issue notes)
    const b = await cluster.start("B", "backup", ["--connect", a.url, "--join"]);
    await untilProtected(a, b, 60_000);
    stage("B protects A");
    // the screen is the console's: no credential, no screen
    await expect(getJson(screenUrl(a.url))).rejects.toThrow(/HTTP 401/);
    await expect(getJson(screenUrl(a.url), { token: "not-the-console-token" })).rejects.toThrow(/HTTP 401/);

    const t = new TmuxSession([process.execPath, cliPath, "console", "--screen", a.url, b.url], { cwd: packageRoot(), env: { LOCKSTEP_TOKEN: token, LOCKSTEP_LOG_LEVEL: "warn" } });
    sessions.push(t);
    await t.waitFor((s) => s.includes("type here:"), 60_000, "the guest's screen in the console");
    t.type("hello vga\r");
    await t.waitFor((s) => s.includes("hello vga"), 30_000, "the typed line on the screen");
    // the backup's machine shows the same screen (once it has replayed the keys)
    const seen = { a: "", b: "" };
    await until(async () => (seen.b = await screenOf(b.url)) === (seen.a = await screenOf(a.url)), 30_000, () => `the backup's screen:\n${seen.b}\nthe primary's:\n${seen.a}`);

    // half a line, the primary dies, the rest of the line: the console resends what was not
    // acknowledged and the new primary applies each key once
    t.type("line");
    a.kill("SIGKILL");
    t.type(" two");
    await b.waitEvent("live", 30_000);
    stage("B live");
    const shown = await t.waitFor((s) => s.includes("line two"), 30_000, "the rest of the line after the takeover");
    await until(() => paneScreen(t.screen()).join("\n") === expected.join("\n"), 10_000, () => `the console's screen:\n${paneScreen(t.screen()).join("\n")}\nexpected:\n${expected.join("\n")}\n(last shown:\n${shown})`);
    expect((await screenNow(b)).split("\n")).toEqual(expected);
    // a new backup joins the survivor from a checkpoint (a machine without a hard disk: its restore
    // used to throw in v86's PCI code) and shows the same screen
    const c = await cluster.start("C", "backup", ["--connect", b.url, "--join"]);
    await untilProtected(b, c, 60_000);
    stage("C protects B");
    expect((await screenNow(c)).split("\n")).toEqual(expected);

    // F1 (the terminal sends ESC O P): the guest switches to a VBE graphics mode; the console says
    // so, and the picture (GET /screen.png) of the primary and its backup is the same
    t.key("F1");
    await t.waitFor((s) => s.includes("graphics mode"), 30_000, "the console to say the screen is graphical");
    const png = async (node: string) => {
      const r = await fetch(new URL("/screen.png", node.replace(/^ws/, "http")), { headers: { authorization: `Bearer ${token}` } });
      return r.status === 200 ? Buffer.from(await r.arrayBuffer()) : undefined;
    };
    let pictures: Array<Buffer | undefined> = [];
    await until(async () => (pictures = await Promise.all([png(b.url), png(c.url)]))[0] !== undefined && pictures[1] !== undefined && pictures[0]!.equals(pictures[1]!), 30_000, () => `the same picture on B and C (sizes ${pictures.map((p) => p?.length)})`);
    expect(pictures[0]!.subarray(1, 4).toString("latin1")).toBe("PNG");
    expect(pictures[0]!.readUInt32BE(16)).toBe(320);
    stage("graphics on B and C");
    console.log(took.join("; "));
    t.key("C-]");
    await t.waitFor(() => t.exitStatus() !== undefined, 30_000, "lockstep console to exit");
    expect(t.exitStatus()).toBe(0);
  }, 240_000);
});
