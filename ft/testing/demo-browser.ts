/**
 * DemoInBrowser: `lockstep demo --web` as a child process and its web view in a real headless
 * browser (the system's Chromium through playwright-core), for the web view's test and for the
 * script that makes the README's screenshots. It signs in with the address the demo prints and
 * reads the page through `window.lockstepView` (what the page holds) and its DOM (what it shows).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser, type Page } from "playwright-core";
import { packageRoot } from "../../emulator/package-root.js";

/** Where Debian's chromium package puts the browser (or LOCKSTEP_CHROMIUM). */
export function chromiumPath(): string | undefined {
  const candidates = [process.env.LOCKSTEP_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter((p): p is string => !!p);
  return candidates.find((p) => existsSync(p));
}

export interface ViewNode {
  name: string;
  url: string;
  role: string;
  epoch: number | null;
  protected: boolean | null;
}

export class DemoInBrowser {
  /** Everything the demo printed (its status lines). */
  log = "";
  /** Dialogs the page opened (alert, confirm): the page should never need one. */
  readonly dialogs: string[] = [];
  readonly pageErrors: string[] = [];

  private constructor(
    readonly demo: ChildProcess,
    readonly browser: Browser,
    readonly page: Page,
    /** The demo's web address (without the credential) and the sign-in address. */
    readonly url: string,
    readonly signInUrl: string,
    readonly token: string,
  ) {}

  static async start(options: { image?: string; width?: number; height?: number; timeoutMs?: number } = {}): Promise<DemoInBrowser> {
    const executablePath = chromiumPath();
    if (!executablePath) throw new Error("no Chromium: install Debian's chromium package (or set LOCKSTEP_CHROMIUM)");
    const main = join(packageRoot(), "dist", "ft", "cli", "main.js");
    const demo = spawn(process.execPath, [main, "demo", "--web", "--web-port", "0", "--net", "none", "--image", options.image ?? "linux"], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    const signIn = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the demo printed no web address in ${options.timeoutMs ?? 60_000} ms:\n${log}`)), options.timeoutMs ?? 60_000);
      demo.stderr!.setEncoding("utf8");
      demo.stderr!.on("data", (chunk: string) => {
        log += chunk;
        const m = /web view: (http:\/\/\S+?)\x1b/.exec(log);
        if (m) {
          clearTimeout(timer);
          resolve(m[1]!);
        }
      });
      demo.once("exit", (code) => {
        clearTimeout(timer);
        reject(new Error(`the demo exited (${code}) before it served the web view:\n${log}`));
      });
    });
    const browser = await chromium.launch({ executablePath, args: ["--no-sandbox", "--disable-gpu"] }).catch((e: Error) => {
      demo.kill("SIGTERM");
      throw e;
    });
    const page = await browser.newPage({ viewport: { width: options.width ?? 1400, height: options.height ?? 1000 } });
    const u = new URL(signIn);
    const d = new DemoInBrowser(demo, browser, page, u.origin, signIn, new URLSearchParams(u.hash.slice(1)).get("token") ?? "");
    d.log = log;
    demo.stderr!.on("data", (chunk: string) => (d.log += chunk));
    page.on("dialog", (dialog) => {
      d.dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    page.on("pageerror", (e) => d.pageErrors.push(e.message));
    await page.goto(signIn);
    await page.waitForFunction(() => "lockstepView" in window, undefined, { timeout: 30_000 });
    return d;
  }

  /** The demo's list of the nodes it runs (with their pids). */
  async demoNodes(): Promise<Array<{ name: string; url: string; running: boolean; pid: number | undefined }>> {
    const r = await fetch(`${this.url}/demo/nodes`, { headers: { authorization: `Bearer ${this.token}` } });
    return ((await r.json()) as { nodes: Array<{ name: string; url: string; running: boolean; pid: number | undefined }> }).nodes;
  }

  /** Another page in the same browser (e.g. a node's own web view). */
  async open(url: string): Promise<Page> {
    const page = await this.browser.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on("dialog", (dialog) => {
      this.dialogs.push(dialog.message());
      void dialog.dismiss();
    });
    page.on("pageerror", (e) => this.pageErrors.push(e.message));
    await page.goto(url);
    return page;
  }

  /** The console output the page received, as text. */
  transcript(page: Page = this.page): Promise<string> {
    return page.evaluate(() => (window as any).lockstepView.transcript() as string);
  }

  /** What the xterm terminal shows (its buffer), line by line. */
  screenText(page: Page = this.page): Promise<string> {
    return page.evaluate(() => (window as any).lockstepView.screenText() as string);
  }

  /** The page's nodes; none while the page is still loading (signing in). */
  nodes(page: Page = this.page): Promise<ViewNode[]> {
    return page.evaluate(() => ((window as any).lockstepView?.nodes() ?? []) as ViewNode[]);
  }

  timeline(page: Page = this.page): Promise<string[]> {
    return page.evaluate(() => (window as any).lockstepView.timeline() as string[]);
  }

  warnings(page: Page = this.page): Promise<string[]> {
    return page.evaluate(() => (window as any).lockstepView.warnings() as string[]);
  }

  /** Waits until the page's console transcript matches. */
  async waitForOutput(re: RegExp, timeoutMs: number, page: Page = this.page): Promise<void> {
    await page.waitForFunction(([src, flags]) => new RegExp(src!, flags).test((window as any).lockstepView?.transcript() ?? ""), [re.source, re.flags], { timeout: timeoutMs, polling: 200 });
  }

  /** Waits until a predicate over the page's nodes holds. */
  async waitForNodes(what: string, f: (nodes: ViewNode[]) => boolean, timeoutMs: number, page: Page = this.page): Promise<ViewNode[]> {
    const until = performance.now() + timeoutMs;
    for (;;) {
      const nodes = await this.nodes(page);
      if (f(nodes)) return nodes;
      if (performance.now() > until) throw new Error(`the page never showed ${what}; it shows ${JSON.stringify(nodes)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Types into the xterm console, as a person would (a click on it, then the keys). */
  async type(text: string, page: Page = this.page): Promise<void> {
    await page.click("#terminal");
    await page.keyboard.type(text, { delay: 5 });
  }

  async close(): Promise<void> {
    await this.browser.close().catch(() => {});
    if (this.demo.exitCode === null) {
      const exited = new Promise((r) => this.demo.once("exit", r));
      this.demo.kill("SIGTERM");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (this.demo.exitCode === null) this.demo.kill("SIGKILL");
    }
  }
}
