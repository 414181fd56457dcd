/**
 * NodeServer: one HTTP server per lockstep node, bound to loopback unless told otherwise.
 *   GET  /status            JSON status (role, epoch, slice, lag, ...), no token needed
 *   GET  /metrics           Prometheus metrics
 *   GET  /                  the web view (the console credential; see web/web-app.ts)
 *   WS   /peer              the logging channel (one peer at a time): the peer credential
 *   WS   /console           console clients: the console credential
 * A WebSocket upgrade carries its credential in `Authorization: Bearer` (never in the URL, which
 * ends up in logs and proxies); a missing or wrong one — the console credential on /peer too — is
 * refused with HTTP 401 before any frame is read. So a console user cannot pose as the backup and
 * acknowledge output no backup holds. A browser, which cannot set headers on a WebSocket, gives
 * the console credential as a subprotocol instead (`bearer.<base64url>` beside `lockstep.console`);
 * a cookie is never enough for a WebSocket (another site's page could use it). Another origin (the
 * web view loaded from the pair's other node) may read /status when it presents the credential.
 * With `tls` the server speaks HTTPS/WSS. Frames are bounded by `maxPayload`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { Duplex } from "node:stream";
import { WebSocketServer, type WebSocket } from "ws";
import { wireFrameBytesMax } from "../wire/envelope.js";
import { consoleSubprotocol, subprotocolCredential, tokenMatches } from "../web/credentials.js";
import { serveWebApp, type WebPageConfig } from "../web/web-app.js";

export { tokenMatches };

export interface NodeServerOptions {
  host: string;
  port: number;
  /** Credential of /console. */
  consoleToken: string;
  /** Credential of /peer (another than the console's). */
  peerToken: string;
  /** Certificate and key (PEM): serve HTTPS and WSS. */
  tls?: { cert: Buffer; key: Buffer };
  status: () => unknown;
  /** The guest's VGA text screen (console credential): undefined while there is no machine. */
  screen: () => Promise<unknown>;
  /** The guest's screen in a VBE graphics mode as a PNG (console credential): null in a text mode, undefined without a machine. */
  screenPng: () => Promise<Buffer | null | undefined>;
  /** The web view's page: what it is told (public). */
  webPage: () => WebPageConfig;
  metrics: () => Promise<string>;
  onPeer: (ws: WebSocket, req: IncomingMessage) => void;
  onConsole: (ws: WebSocket, req: IncomingMessage) => void;
  onRejected: (reason: string, remote: string | undefined) => void;
}

export class NodeServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  port = 0;

  constructor(private readonly options: NodeServerOptions) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: wireFrameBytesMax, handleProtocols: (offered) => (offered.has(consoleSubprotocol) ? consoleSubprotocol : false) });
    const handler = (req: IncomingMessage, res: import("node:http").ServerResponse) => {
      try {
        this.answer(req, res);
      } catch (e) {
        // no request may take the node down (a path like "//" does not even parse as a URL)
        if (!res.headersSent) res.writeHead(400, { "content-type": "text/plain" });
        res.end(`lockstep: ${(e as Error).message}\n`);
      }
    };
    this.http = options.tls ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createServer(handler);
    this.http.on("upgrade", (req, socket, head) => {
      try {
        this.upgrade(req, socket as Duplex, head);
      } catch (e) {
        this.options.onRejected(`bad upgrade request: ${(e as Error).message}`, req.socket.remoteAddress);
        socket.end("HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n");
      }
    });
  }

  private answer(req: IncomingMessage, res: import("node:http").ServerResponse): void {
    const options = this.options;
    const url = new URL(req.url ?? "/", "http://x");
    if (serveWebApp(req, res, { token: options.consoleToken, config: options.webPage })) return;
    const origin = req.headers.origin;
    if (req.method === "OPTIONS" && (url.pathname === "/status" || url.pathname === "/screen" || url.pathname === "/screen.png") && origin) {
      res.writeHead(204, { "access-control-allow-origin": origin, "access-control-allow-headers": "authorization", "access-control-allow-methods": "GET", "access-control-max-age": "600", vary: "origin" });
      res.end();
    } else if (req.method === "GET" && url.pathname === "/status") {
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      const cors = origin && tokenMatches(bearer, options.consoleToken) ? { "access-control-allow-origin": origin, vary: "origin" } : {};
      res.writeHead(200, { "content-type": "application/json", "cache-control": "no-store", ...cors });
      res.end(JSON.stringify(options.status()));
    } else if (req.method === "GET" && (url.pathname === "/screen" || url.pathname === "/screen.png")) {
      // what the guest shows is the console's: the console credential, as Authorization: Bearer
      const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
      if (!tokenMatches(bearer, options.consoleToken)) {
        options.onRejected(`wrong or missing credential on ${url.pathname}`, req.socket.remoteAddress);
        res.writeHead(401, { "content-type": "text/plain" });
        return void res.end(`lockstep: ${url.pathname} needs the console credential (Authorization: Bearer)\n`);
      }
      const headers = { "cache-control": "no-store", ...(origin ? { "access-control-allow-origin": origin, vary: "origin" } : {}) };
      const fail = () => {
        res.writeHead(500, headers);
        res.end();
      };
      if (url.pathname === "/screen") {
        options.screen().then((screen) => {
          res.writeHead(screen === undefined ? 503 : 200, { "content-type": "application/json", ...headers });
          res.end(JSON.stringify(screen ?? { error: "no machine running here yet" }));
        }, fail);
      } else {
        // the pixels of a VBE graphics mode; 204 in a text mode (GET /screen then)
        options.screenPng().then((png) => {
          if (png === undefined) res.writeHead(503, { "content-type": "text/plain", ...headers }).end("lockstep: no machine running here yet\n");
          else if (png === null) res.writeHead(204, headers).end();
          else res.writeHead(200, { "content-type": "image/png", ...headers }).end(png);
        }, fail);
      }
    } else if (req.method === "GET" && url.pathname === "/metrics") {
      options.metrics().then(
        (text) => {
          res.writeHead(200, { "content-type": "text/plain; version=0.0.4" });
          res.end(text);
        },
        () => {
          res.writeHead(500);
          res.end();
        },
      );
    } else {
      res.writeHead(404, { "content-type": "text/plain" });
      res.end("lockstep: / (the web view), /status, /screen, /screen.png, /metrics, and WebSockets on /peer and /console\n");
    }
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1] ?? (url.pathname === "/console" ? subprotocolCredential(req) : undefined);
    const refuse = (status: number, reason: string) => {
      this.options.onRejected(reason, req.socket.remoteAddress);
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? "Unauthorized" : "Not Found"}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (url.pathname !== "/peer" && url.pathname !== "/console") return refuse(404, `no WebSocket endpoint ${url.pathname}`);
    if (url.searchParams.has("token")) return refuse(401, `a credential in the URL of ${url.pathname} is not accepted (send it as Authorization: Bearer)`);
    if (!tokenMatches(given, url.pathname === "/peer" ? this.options.peerToken : this.options.consoleToken)) return refuse(401, `wrong or missing credential on ${url.pathname}`);
    this.wss.handleUpgrade(req, socket, head, (ws) => {
      if (url.pathname === "/peer") this.options.onPeer(ws, req);
      else this.options.onConsole(ws, req);
    });
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.http.once("error", reject);
      this.http.listen(this.options.port, this.options.host, () => {
        const addr = this.http.address();
        this.port = typeof addr === "object" && addr ? addr.port : this.options.port;
        resolve(this.port);
      });
    });
  }

  close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate();
    this.wss.close();
    const closed = new Promise<void>((resolve) => this.http.close(() => resolve()));
    // keep-alive connections (a web view polling /status) would hold the close, and a halted node's exit, for ever
    this.http.closeAllConnections();
    return closed;
  }
}
