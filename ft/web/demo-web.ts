/**
 * The demo's web server: the same page the nodes serve, plus what only `lockstep demo` can do,
 * because it started the nodes: the list of nodes it runs, the events it caused (kills, starts), and
 * buttons to kill the primary, kill the backup and start a new backup that joins from a checkpoint.
 * It lives in the demo's own process, so the page's address outlives every node the buttons kill.
 *
 *   GET  /demo/nodes          {nodes: [{name, url, running, pid}], events: [...]}
 *   POST /demo/kill-primary   SIGKILL the live primary (asks twice when it is not protected)
 *   POST /demo/kill-backup    SIGKILL the live backup
 *   POST /demo/start-backup   start a new backup that joins the live primary
 *
 * The /demo endpoints take the console credential as `Authorization: Bearer` (the page sends it
 * from script): another site's page, which does not hold it, cannot press the buttons.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { tokenMatches } from "./credentials.js";
import { serveWebApp } from "./web-app.js";

export interface DemoEvent {
  seq: number;
  /** Wall-clock ms. */
  atMs: number;
  kind: string;
  text: string;
}

export interface DemoControl {
  nodes(): Array<{ name: string; url: string; running: boolean; pid: number | undefined }>;
  events(): DemoEvent[];
  killPrimary(): string;
  killBackup(): string;
  startBackup(): Promise<string>;
}

export class DemoWeb {
  private readonly http: Server;
  port = 0;

  constructor(
    private readonly control: DemoControl,
    private readonly token: string,
  ) {
    this.http = createServer((req, res) => {
      try {
        this.handle(req, res);
      } catch (e) {
        // a bug in one answer must not take the demo (and the nodes it runs) down
        if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
        res.end(`lockstep demo: ${(e as Error).message}\n`);
      }
    });
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** The address that signs a browser in: the credential in the fragment, which never reaches a server (the page drops it from the address bar). */
  get signInUrl(): string {
    return `${this.url}/#token=${encodeURIComponent(this.token)}`;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    const running = () => this.control.nodes().filter((n) => n.running);
    if (serveWebApp(req, res, { token: this.token, config: () => ({ title: "lockstep demo", nodes: running().map((n) => n.url), demo: true }) })) return;
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    if (!path.startsWith("/demo/")) return json(404, { message: `no ${path} here` });
    if (!tokenMatches(/^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1], this.token)) return json(401, { message: "the console credential, as Authorization: Bearer" });
    if (path === "/demo/nodes" && req.method === "GET") return json(200, { nodes: this.control.nodes(), events: this.control.events() });
    if (req.method !== "POST") return json(405, { message: `${req.method} ${path}: POST it` });
    if (path === "/demo/kill-primary") return json(200, { message: this.control.killPrimary() });
    if (path === "/demo/kill-backup") return json(200, { message: this.control.killBackup() });
    if (path === "/demo/start-backup") {
      this.control.startBackup().then(
        (message) => json(200, { message }),
        (e: Error) => json(500, { message: e.message }),
      );
      return;
    }
    json(404, { message: `no ${path} here` });
  }

  listen(port: number): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(port, "127.0.0.1", () => {
        const a = this.http.address();
        this.port = typeof a === "object" && a ? a.port : port;
        resolve(this.port);
      });
    });
  }

  close(): Promise<void> {
    this.http.closeAllConnections();
    return new Promise((resolve) => this.http.close(() => resolve()));
  }
}
