/**
 * The README's screenshots of the web view (`npm run screenshots`): `lockstep demo --web` with the
 * linux guest in headless Chromium, through the same helper as the web view's test. One picture of
 * the protected pair with a guest loop counting, one after "Kill primary": the backup took over,
 * the count went on and a new backup joined. Needs Debian's chromium.
 */
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { packageRoot } from "../emulator/package-root.js";
import { DemoInBrowser } from "../ft/testing/demo-browser.js";

const prompt = /lockstep:\/root# (\x1b\[6n)?$/;

async function main(): Promise<void> {
  const dir = join(packageRoot(), "ft", "web", "screenshots");
  mkdirSync(dir, { recursive: true });
  const d = await DemoInBrowser.start({ image: "linux", width: 1400, height: 940 });
  try {
    await d.waitForOutput(prompt, 240_000);
    await d.waitForNodes("a protected primary", (ns) => ns.some((n) => n.role === "primary" && n.protected === true), 120_000);
    await d.type("uname -sr; free -m | head -2\r");
    await d.waitForOutput(/Mem:/, 30_000);
    await d.type("i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo count $i; sleep 0.1; done\r");
    await d.waitForOutput(/count 150\r\n/, 60_000);
    const before = join(dir, "web-view-before.png");
    await d.page.screenshot({ path: before });
    console.log(`wrote ${before}`);
    const primary = (await d.nodes()).find((n) => n.role === "primary")!;
    await d.page.click("#kill-primary");
    await d.waitForNodes("a new primary", (ns) => ns.some((n) => n.role === "primary" && n.name !== primary.name), 60_000);
    await d.waitForNodes("protected again", (ns) => ns.some((n) => n.role === "primary" && n.protected === true), 180_000);
    await new Promise((r) => setTimeout(r, 3000)); // a few more points on the charts
    const after = join(dir, "web-view-after.png");
    await d.page.screenshot({ path: after });
    console.log(`wrote ${after}`);
  } finally {
    await d.close();
  }
}

main().catch((e: Error) => {
  console.error(e.message);
  process.exit(1);
});
