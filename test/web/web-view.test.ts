// The web view in a real headless browser (Debian chromium through playwright-core), driving
// `lockstep demo --web` with the linux guest as a person would: type a command into the xterm
// console and read the answer, start a guest loop that counts, click "Kill primary", see the other
// node become primary, the count go on with no line lost or repeated, and "protected" again after
// the new backup joined. A second page, the surviving node's own web view, follows the pair by
// itself and shows the killed node as unreachable. Then the new primary is stopped (SIGSTOP: its
// connections stay open, nothing closes them) and the page must leave it for the node that takes
// over. Credentials: a wrong one gets 401 on the page, /auth, the WebSocket and the demo's buttons.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WebSocket } from "ws";
import { DemoInBrowser } from "../../ft/testing/demo-browser.js";

// ash asks the terminal where its cursor is after the prompt (ESC [6n; xterm.js answers)
const prompt = /lockstep:\/root# (\x1b\[6n)?$/;
const ticks = 150;
const counted = (text: string, tag: string) => [...text.matchAll(new RegExp(`^${tag}-(\\d+)\\r$`, "gm"))].map((m) => Number(m[1]));
const oneToN = (n: number) => Array.from({ length: n }, (_, i) => i + 1);

describe("the web view (headless chromium)", () => {
  let d: DemoInBrowser;
  let stopped: number | undefined;

  beforeAll(async () => {
    d = await DemoInBrowser.start({ image: "linux" });
  }, 120_000);

  afterAll(async () => {
    if (stopped !== undefined) process.kill(stopped, "SIGCONT");
    await d?.close();
  });

  it("types into the console, survives a kill of the primary with nothing lost or repeated, and shows protected again", async () => {
    await d.waitForOutput(prompt, 240_000);
    await d.waitForNodes("a protected primary", (ns) => ns.some((n) => n.role === "primary" && n.protected === true), 120_000);
    await d.type("echo web-$((6*7))\r");
    await d.waitForOutput(/\r\nweb-42\r\n/, 30_000);
    expect((await d.screenText()).split("\n")).toContain("web-42");

    // the backup's own page (served by the node, not the demo): it finds the pair by itself
    const before = await d.nodes();
    const primary = before.find((n) => n.role === "primary")!;
    const backup = before.find((n) => n.role === "backup")!;
    const nodePage = await d.open(`${backup.url}/#token=${encodeURIComponent(d.token)}`);
    await d.waitForNodes("the primary from the backup's page", (ns) => ns.some((n) => n.url === primary.url && n.role === "primary"), 30_000, nodePage);
    await d.waitForOutput(/web-42/, 30_000, nodePage);
    expect(nodePage.url()).not.toContain(d.token); // the credential left the address bar

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
    expect(counted(await d.transcript(), "tick")).toEqual(oneToN(ticks));
    await d.type("echo after-$((7*6))\r");
    await d.waitForOutput(/\r\nafter-42\r\n/, 30_000);
    expect((await d.transcript()).match(/\r\nafter-42\r\n/g)).toHaveLength(1);

    // the demo started a new backup: the new primary is protected again, and the timeline says so after the takeover
    await d.waitForNodes("protected again", (ns) => ns.some((n) => n.name === backup.name && n.role === "primary" && n.protected === true), 180_000);
    const timeline = await d.timeline();
    const tookOver = timeline.indexOf(`${backup.name}: took over as primary (epoch ${after.find((n) => n.name === backup.name)!.epoch})`);
    expect(tookOver).toBeGreaterThanOrEqual(0);
    expect(timeline.slice(tookOver).some((line) => line.startsWith(`${backup.name}: protected by `))).toBe(true);

    // the backup's own page: the killed primary is shown unreachable, the console followed
    await d.waitForNodes(`${primary.name} unreachable on the node's page`, (ns) => ns.some((n) => n.url === primary.url && n.role === "unreachable"), 30_000, nodePage);
    await d.waitForOutput(/after-42/, 30_000, nodePage);
    expect(await nodePage.locator(`.card[data-role="unreachable"]`).count()).toBeGreaterThan(0);
    expect(counted(await d.transcript(nodePage), "tick")).toEqual(oneToN(ticks));
    // and found the new backup through the new primary's status (the backup's hello said where it is)
    await d.waitForNodes("the new backup on the node's page", (ns) => ns.some((n) => n.role === "backup" && n.url !== primary.url && n.url !== backup.url), 30_000, nodePage);

    expect(await d.warnings()).toEqual([]);
    expect(d.dialogs).toEqual([]);
    expect(d.pageErrors).toEqual([]);
  }, 600_000);

  it("leaves a primary that stopped answering (SIGSTOP: its connections stay open) for the node that took over", async () => {
    const before = await d.nodes();
    const primary = before.find((n) => n.role === "primary" && n.protected === true)!;
    expect(primary).toBeDefined();
    await d.type(`j=0; while [ $j -lt ${ticks} ]; do j=$((j+1)); echo tock-$j; sleep 0.1; done\r`);
    await d.waitForOutput(/tock-20\r\n/, 60_000);
    const pid = (await d.demoNodes()).find((n) => n.name === primary.name)!.pid!;
    process.kill(pid, "SIGSTOP");
    stopped = pid;
    const after = await d.waitForNodes(`a new primary, ${primary.name} unreachable`, (ns) => ns.some((n) => n.role === "primary" && n.name !== primary.name) && ns.some((n) => n.name === primary.name && n.role === "unreachable"), 60_000);
    const next = after.find((n) => n.role === "primary")!;
    await d.page.waitForFunction((name) => (window as any).lockstepView.attachedTo() === name, next.name, { timeout: 30_000 });
    await d.waitForOutput(new RegExp(`tock-${ticks}\\r\\n`), 120_000);
    expect(counted(await d.transcript(), "tock")).toEqual(oneToN(ticks));
    expect(await d.warnings()).toEqual([]);
    // the stopped node, woken, finds a newer epoch and halts (its process ends); the page never took it for the primary again
    process.kill(pid, "SIGCONT");
    stopped = undefined;
    const until = performance.now() + 30_000;
    while ((await d.demoNodes()).find((n) => n.name === primary.name)!.running) {
      expect(await d.page.textContent("#pair-summary")).toContain(`primary ${next.name}`);
      if (performance.now() > until) throw new Error(`${primary.name} did not halt after SIGCONT`);
      await new Promise((r) => setTimeout(r, 200));
    }
    expect(await d.page.textContent("#pair-summary")).toContain(`primary ${next.name}`);
  }, 300_000);

  it("refuses a wrong credential on the page, its WebSocket and the demo's buttons", async () => {
    const live = (await d.nodes()).find((n) => n.role === "primary")!;
    for (const base of [d.url, live.url]) {
      expect((await fetch(`${base}/`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
      expect((await fetch(`${base}/auth`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
      expect((await fetch(`${base}/auth`)).status).toBe(401);
      expect((await fetch(`${base}/auth`, { headers: { authorization: `Bearer ${d.token}` } })).status).toBe(204);
      const page = await fetch(`${base}/`);
      expect(page.status).toBe(200); // the page itself holds no secret
      expect(await page.text()).not.toContain(d.token);
      expect(page.headers.get("set-cookie")).toBeNull();
      expect(page.headers.get("content-security-policy")).toContain("frame-ancestors 'none'");
    }
    expect((await fetch(`${d.url}/demo/kill-primary`, { method: "POST" })).status).toBe(401);
    expect((await fetch(`${d.url}/demo/kill-primary`, { method: "POST", headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await fetch(`${d.url}/demo/nodes`, { headers: { authorization: "Bearer wrong" } })).status).toBe(401);
    expect((await fetch(`${live.url}//`)).status).toBe(400); // not a crash of the node

    const upgrade = (token: string | undefined) =>
      new Promise<number | "open">((resolve) => {
        const protocols = ["lockstep.console", ...(token !== undefined ? [`bearer.${Buffer.from(token).toString("base64url")}`] : [])];
        const ws = new WebSocket(`${live.url.replace(/^http/, "ws")}/console`, protocols, { headers: { origin: live.url } });
        ws.on("open", () => {
          ws.close();
          resolve("open");
        });
        ws.on("unexpected-response", (_req, res) => resolve(res.statusCode ?? 0));
        ws.on("error", () => {});
      });
    expect(await upgrade("wrong")).toBe(401);
    expect(await upgrade(undefined)).toBe(401);
    expect(await upgrade(d.token)).toBe("open");

    // another origin reads /status only with the credential
    const withCred = await fetch(`${live.url}/status`, { headers: { origin: "http://elsewhere.example", authorization: `Bearer ${d.token}` } });
    expect(withCred.headers.get("access-control-allow-origin")).toBe("http://elsewhere.example");
    const without = await fetch(`${live.url}/status`, { headers: { origin: "http://elsewhere.example" } });
    expect(without.headers.get("access-control-allow-origin")).toBeNull();

    // in the browser: a wrong credential in the address shows the sign-in form, not the pair, and no dialog
    const wrongPage = await d.open(`${d.url}/#token=wrong`);
    await wrongPage.waitForSelector("#sign-in:not([hidden])", { timeout: 10_000 });
    expect(await wrongPage.textContent("#sign-in-error")).toContain("401");
    expect(await wrongPage.evaluate(() => "lockstepView" in window)).toBe(false);
    await wrongPage.fill("#sign-in input[name=token]", d.token);
    await wrongPage.click("#sign-in button");
    await wrongPage.waitForFunction(() => "lockstepView" in window, undefined, { timeout: 10_000 });
    expect(d.dialogs).toEqual([]);
  });
});
