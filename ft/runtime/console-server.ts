/**
 * ConsoleServer: the console clients' WebSockets on a node. Each accepted connection becomes a
 * numbered session; the server reports sessions opening and closing and the messages they send,
 * and sends the node's console messages to a session (dropping a client that reads too slowly).
 * Which session gets what, and what input is applied, is decided elsewhere (the node core).
 */
import type { Logger } from "pino";
import { WebSocket } from "ws";
import { decodeConsoleClientMessage, encodeConsoleMessage, type ConsoleClientMessage, type ConsoleServerMessage } from "../wire/console-messages.js";
import { decodeIncoming } from "./incoming-frame.js";

/** Console messages queued per client at most before it is dropped as too slow. */
const consoleBufferedBytesMax = 8 * 2 ** 20;

export interface ConsoleServerEvents {
  opened(session: number): void;
  closed(session: number): void;
  message(session: number, msg: ConsoleClientMessage): void;
}

export class ConsoleServer {
  private readonly sessions = new Map<number, WebSocket>();
  private nextSession = 1;

  constructor(
    private readonly log: Logger,
    private readonly events: ConsoleServerEvents,
  ) {}

  accept(ws: WebSocket): void {
    const session = this.nextSession++;
    this.sessions.set(session, ws);
    ws.on("message", (data: Buffer) => {
      const msg = decodeIncoming(ws, data, decodeConsoleClientMessage, (code, why) => this.log.warn({ code }, `console frame rejected: ${why}`));
      if (msg) this.events.message(session, msg);
    });
    ws.on("error", () => {});
    ws.on("close", () => {
      this.sessions.delete(session);
      this.events.closed(session);
    });
    this.events.opened(session);
  }

  send(session: number, message: ConsoleServerMessage): void {
    const ws = this.sessions.get(session);
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    if (ws.bufferedAmount > consoleBufferedBytesMax) {
      this.log.warn({ session }, "console client too slow: disconnected");
      ws.terminate();
      return;
    }
    ws.send(encodeConsoleMessage(message));
  }

  close(session: number, code: number, reason: string): void {
    this.sessions.get(session)?.close(code, reason);
  }
}
