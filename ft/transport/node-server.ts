/**
 * NodeServer: one HTTP server per lockstep node, bound to loopback unless told otherwise.
 *   GET  /status            JSON status (role, epoch, slice, lag, ...), no token needed
 *   GET  /metrics           Prometheus metrics
 *   WS   /peer              the logging channel (one peer at a time): the peer credential
 *   WS   /console           console clients: the console credential
 * A WebSocket upgrade carries its credential in `Authorization: Bearer` (never in the URL, which
 * ends up in logs and proxies); a missing or wrong one — the console credential on /peer too — is
 * refused with HTTP 401 before any frame is read. So a console user cannot pose as the backup and
 * acknowledge output no backup holds. With `tls` the server speaks HTTPS/WSS. Frames are bounded
 * by `maxPayload`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import { createServer as createTlsServer } from "node:https";
import type { Duplex } from "node:stream";
import { timingSafeEqual } from "node:crypto";
import { WebSocketServer, type WebSocket } from "ws";
import { wireFrameBytesMax } from "../wire/envelope.js";

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
  metrics: () => Promise<string>;
  onPeer: (ws: WebSocket, req: IncomingMessage) => void;
  onConsole: (ws: WebSocket, req: IncomingMessage) => void;
  onRejected: (reason: string, remote: string | undefined) => void;
}

export function tokenMatches(given: string | null | undefined, token: string): boolean {
  if (!given) return false;
  const a = Buffer.from(given);
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

export class NodeServer {
  private readonly http: Server;
  private readonly wss: WebSocketServer;
  port = 0;

  constructor(private readonly options: NodeServerOptions) {
    this.wss = new WebSocketServer({ noServer: true, maxPayload: wireFrameBytesMax });
    const handler = (req: IncomingMessage, res: import("node:http").ServerResponse) => {
      const url = new URL(req.url ?? "/", "http://x");
      if (req.method === "GET" && url.pathname === "/status") {
        res.writeHead(200, { "content-type": "application/json" });
        res.end(JSON.stringify(options.status()));
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
        res.end("lockstep: /status, /metrics, and WebSockets on /peer and /console\n");
      }
    };
    this.http = options.tls ? createTlsServer({ cert: options.tls.cert, key: options.tls.key }, handler) : createServer(handler);
    this.http.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const given = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
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
    return new Promise((resolve) => this.http.close(() => resolve()));
  }
}
