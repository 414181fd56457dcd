// The web view in a real headless browser (Debian chromium through playwright-core), driving
// `lockstep demo --web` with the linux guest as a person would: type a command into the xterm
// console and read the answer, start a guest loop that counts, click "Kill primary", see the other
// node become primary, the count go on with no line lost or repeated, and "protected" again after
// the new backup joined. A second page, the surviving node's own web view, follows the pair by
// itself and shows the killed node as unreachable. Credentials: a wrong one gets 401 on the page,
// its WebSocket and the demo's buttons.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { DemoInBrowser } from "../../ft/testing/demo-browser.js";

// ash asks the terminal where its cursor is after the prompt (ESC [6n; xterm.js answers)
const prompt = /lockstep:\/root# (\x1b\[6n)?$/;
const ticks = 150;

describe("the web view (headless chromium)", () => {
  let d: DemoInBrowser;

  beforeAll(async () => {
    d = await DemoInBrowser.start({ image: "linux" });
  }, 120_000);

  afterAll(async () => {
    await d?.close();
  });

  it("types into the console, survives a kill of the primary with nothing lost or repeated, and shows protected again", async () => {
    await d.waitForOutput(prompt, 240_000);
    await d.waitForNodes("a protected primary", (ns) => ns.some((n) => n.role === "primary" && n.protected === true), 120_000);
    await d.type("echo web-$((6*7))\r");
    await d.waitForOutput(/\r\nweb-42\r\n/, 30_000);
    expect((await d.screenText()).split("\n")).toContain("web-42");

    // the surviving node's own page (served by the backup, which is not the demo): it finds the pair by itself
    const before = await d.nodes();
    const primary = before.find((n) => n.role === "primary")!;
    const backup = before.find((n) => n.role === "backup")!;
    const nodePage = await d.open(`${backup.url}/?token=${encodeURIComponent(d.token)}`);
    await d.waitForNodes("the primary from the backup's page", (ns) => ns.some((n) => n.url === primary.url && n.role === "primary"), 30_000, nodePage);
    await d.waitForOutput(/web-42/, 30_000, nodePage);

    // a guest loop that counts while the primary dies
    await d.type(`i=0; while [ $i -lt ${ticks} ]; do i=$((i+1)); echo tick-$i; sleep 0.1; done\r`);
    await d.waitForOutput(/tick-20\r\n/, 60_000);
    await d.page.click("#kill-primary");
    const after = await d.waitForNodes(
      `${backup.name} as primary and ${primary.name} killed`,
      (ns) => ns.some((n) => n.name === backup.name && n.role === "primary") && ns.some((n) => n.name === primary.name && n.role === "killed"),
      60_000,
    );
    expect(after.find((n) => n.name === backup.name)!.epoch).toBeGreaterThan(before.find((n) => n.name === primary.name)!.epoch!);
    await d.waitForOutput(new RegExp(`tick-${ticks}\\r\\n[^]*${prompt.source}`), 120_000);

    // every line of the count once and in order, across the takeover
    const text = await d.transcript();
    const counted = [...text.matchAll(/^tick-(\d+)\r$/gm)].map((m) => Number(m[1]));
    expect(counted).toEqual(Array.from({ length: ticks }, (_, i) => i + 1));
    await d.type("echo after-$((7*6))\r");
    await d.waitForOutput(/\r\nafter-42\r\n/, 30_000);
    expect((await d.transcript()).match(/\r\nafter-42\r\n/g)).toHaveLength(1);

    // the demo started a new backup: the new primary is protected again
    await d.waitForNodes("protected again", (ns) => ns.some((n) => n.name === backup.name && n.role === "primary" && n.protected === true), 180_000);
    const timeline = (await d.timeline()).join("\n");
    expect(timeline).toMatch(/took over as primary/);
    expect(timeline).toMatch(/protected by/);

    // the backup's own page: the killed primary is shown unreachable, the console followed to it
    await d.waitForNodes(`${primary.name} unreachable on the node's page`, (ns) => ns.some((n) => n.url === primary.url && n.role === "unreachable"), 30_000, nodePage);
    await d.waitForOutput(/after-42/, 30_000, nodePage);
    // and found the new backup through the new primary's status (the backup's hello said where it is)
    await d.waitForNodes("the new backup on the node's page", (ns) => ns.some((n) => n.role === "backup" && n.url !== primary.url && n.url !== backup.url), 30_000, nodePage);
    expect(await nodePage.locator(`.card[data-role="unreachable"]`).count()).toBeGreaterThan(0);
    const nodeText = await d.transcript(nodePage);
    expect([...nodeText.matchAll(/^tick-(\d+)\r$/gm)].map((m) => Number(m[1]))).toEqual(Array.from({ length: ticks }, (_, i) => i + 1));

    expect(await d.warnings()).toEqual([]);
    expect(d.dialogs).toEqual([]);
    expect(d.pageErrors).toEqual([]);
  }, 600_000);

  it("refuses a wrong credential on the page, its WebSocket and the demo's buttons", async () => {
    const nodes = await d.nodes();
    const live = nodes.find((n) => n.role === "primary")!;
    for (const base of [d.url, live.url]) {
      expect((await fetch(`${base}/`)).status).toBe(401);
      expect((await fetch(`${base}/?token=wrong`, { redirect: "manual" })).status).toBe(401);
      expect((await fetch(`${base}/`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
      expect((await fetch(`${base}/app/ft/web/client/main.js`)).status).toBe(401);
      const good = await fetch(`${base}/?token=${encodeURIComponent(d.token)}`, { redirect: "manual" });
      expect(good.status).toBe(303);
      expect(good.headers.get("set-cookie")).toMatch(/HttpOnly; SameSite=Strict/);
    }
    expect((await fetch(`${d.url}/demo/kill-primary`, { method: "POST" })).status).toBe(401);
    expect((await fetch(`${d.url}/demo/nodes`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);

    const upgrade = (token: string) =>
      new Promise<number | "open">((resolve) => {
        const b64 = Buffer.from(token).toString("base64url");
        const ws = new WebSocket(`${live.url.replace(/^http/, "ws")}/console`, ["lockstep.console", `bearer.${b64}`]);
        ws.on("open", () => {
          ws.close();
          resolve("open");
        });
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("error", () => {});
      });
    expect(await upgrade("wrong")).toBe(401);
    expect(await upgrade(d.token)).toBe("open");

    // another origin reads /status only with the credential
    const withCred = await fetch(`${live.url}/status`, { headers: { origin: "http://elsewhere.example", authorization: `Bearer ${d.token}` } });
    expect(withCred.headers.get("access-control-allow-origin")).toBe("http://elsewhere.example");
    const without = await fetch(`${live.url}/status`, { headers: { origin: "http://elsewhere.example" } });
    expect(without.headers.get("access-control-allow-origin")).toBeNull();
  });
});
