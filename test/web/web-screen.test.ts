// The guest's VGA text screen in the web view (headless chromium): `lockstep demo --web --image vga`
// (a guest with no serial console) opens the page's screen pane by itself; keys typed on it reach the
// guest's keyboard; the screen drawn is what the live node's text buffer holds (GET /screen); after
// "Kill primary" the page shows the new primary's screen, with every key once; F1 (a VBE graphics
// mode) shows the picture.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { screenFromJson, screenText } from "../../emulator/text-screen.js";
import { getJson } from "../../ft/runtime/get-json.js";
import { until } from "../../ft/runtime/until.js";
import { DemoInBrowser } from "../../ft/testing/demo-browser.js";

describe("the VGA screen in the web view (headless chromium)", () => {
  let d: DemoInBrowser;
  beforeAll(async () => {
    d = await DemoInBrowser.start({ image: "vga" });
  }, 120_000);
  afterAll(async () => {
    await d?.close();
  });

  const vgaText = () => d.page.evaluate(() => (window as any).lockstepView.vgaText() as string);
  /** The lines the page's screen element shows, trailing blanks cut. */
  let lastShown = "";
  const shown = async () => (lastShown = (await d.page.locator("#screen").innerText()).split("\n").map((l) => l.replace(/\s+$/, "")).join("\n").replace(/\n+$/, ""));
  const liveScreen = async () => {
    const primary = (await d.nodes()).find((n) => n.role === "primary")!;
    return screenText(screenFromJson(await getJson(new URL("/screen", primary.url), { token: d.token })));
  };

  it("opens by itself for a guest without serial output, sends keys once, and follows a takeover", async () => {
    await until(async () => (await vgaText()).includes("type here:"), 60_000, "the guest's screen in the page");
    await until(() => d.page.locator("#screen-pane").evaluate((e) => (e as HTMLDetailsElement).open), 10_000, "the screen pane to open by itself");
    await d.waitForNodes("a protected primary", (ns) => ns.some((n) => n.role === "primary" && n.protected === true), 60_000);
    await d.page.click("#screen");
    await d.page.keyboard.type("hello web");
    await d.page.keyboard.press("Enter");
    await until(async () => (await shown()).includes("hello web"), 30_000, () => `the typed line on the page's screen:\n${lastShown}`);
    // what the page draws is what the live node's text buffer holds
    let live = "";
    await until(async () => (await shown()) === (live = await liveScreen()).replace(/\n+$/, ""), 10_000, () => `the page's screen equal to GET /screen:\n${live}`);

    await d.page.click("#kill-primary");
    await d.waitForNodes("the other node as primary", (ns) => ns.some((n) => n.role === "primary") && ns.some((n) => n.role === "killed"), 60_000);
    await d.page.click("#screen");
    await d.page.keyboard.type("after");
    await until(async () => (await shown()).includes("after"), 30_000, () => `typing after the takeover:\n${lastShown}`);
    const lines = (await shown()).split("\n");
    expect(lines.filter((l) => l === "hello web")).toHaveLength(1);
    expect(lines.filter((l) => l === "after")).toHaveLength(1);
    expect(await shown()).toBe((await liveScreen()).replace(/\n+$/, ""));

    // F1: the guest switches to a VBE graphics mode (16 bars in the CGA colours): the pane shows the picture
    await d.page.keyboard.press("F1");
    await until(() => d.page.evaluate(() => (window as any).lockstepView.vgaPictures() > 0), 30_000, "a picture in the screen pane");
    const img = d.page.locator("#screen img");
    await until(() => img.evaluate((i) => (i as HTMLImageElement).complete && (i as HTMLImageElement).naturalWidth === 320), 10_000, "the picture loaded");
    const pixels = await img.evaluate((i) => {
      const image = i as HTMLImageElement;
      const canvas = document.createElement("canvas");
      canvas.width = image.naturalWidth;
      canvas.height = image.naturalHeight;
      const ctx = canvas.getContext("2d")!;
      ctx.drawImage(image, 0, 0);
      return [10, 30, 310].map((x) => Array.from(ctx.getImageData(x, 100, 1, 1).data.slice(0, 3)));
    });
    expect(pixels).toEqual([
      [0, 0, 0],
      [0, 0, 0xaa],
      [0xff, 0xff, 0xff],
    ]);
    expect(d.pageErrors).toEqual([]);
  }, 240_000);
});
