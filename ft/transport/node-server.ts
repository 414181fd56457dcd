/**
 * NodeServer: one HTTP server per lockstep node, bound to loopback unless told otherwise.
 *   GET  /status            JSON status (role, epoch, slice, lag, ...), no token needed
 *   GET  /metrics           Prometheus metrics
 *   WS   /peer?token=T      the logging channel (one peer at a time)
 *   WS   /console?token=T   console clients
 * WebSocket upgrades must carry the shared token (query `token` or `Authorization: Bearer`); a wrong
 * token is refused with HTTP 401 before any frame is read. Frames are bounded by `maxPayload`.
 */
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { Duplex } from "node:stream";
import { timingSafeEqual } from "node:crypto";
import { WebSocketServer, type WebSocket } from "ws";
import { wireFrameBytesMax } from "../wire/envelope.js";

export interface NodeServerOptions {
  host: string;
  port: number;
  token: string;
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
    this.http = createServer((req, res) => {
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
    });
    this.http.on("upgrade", (req, socket, head) => this.upgrade(req, socket, head));
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const url = new URL(req.url ?? "/", "http://x");
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? "")?.[1];
    const given = url.searchParams.get("token") ?? bearer;
    const refuse = (status: number, reason: string) => {
      this.options.onRejected(reason, req.socket.remoteAddress);
      socket.end(`HTTP/1.1 ${status} ${status === 401 ? "Unauthorized" : "Not Found"}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    };
    if (url.pathname !== "/peer" && url.pathname !== "/console") return refuse(404, `no WebSocket endpoint ${url.pathname}`);
    if (!tokenMatches(given, this.options.token)) return refuse(401, `wrong or missing token on ${url.pathname}`);
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
