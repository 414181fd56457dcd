/**
 * ConsoleClient: follows whichever node is live among the URLs it knows. It keeps the output offset
 * it reached and the input not yet acknowledged; on every (re)connection it attaches at that offset
 * and resends that input, so output is neither lost nor repeated across a failover and acknowledged
 * input is applied exactly once (the server drops sequence numbers it already applied).
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { WebSocket } from "ws";
import { WireError } from "../wire/envelope.js";
import { consoleInputBytesMax, decodeConsoleServerMessage, encodeConsoleMessage, type ConsoleClientMessage } from "../wire/console-messages.js";

export interface ConsoleClientOptions {
  urls: string[];
  token: string;
  clientId?: string;
  /** Reconnect delay after a failed or lost connection. */
  retryMs?: number;
  /** Input not yet acknowledged, at most (backpressure: `send` returns false beyond it). */
  unackedBytesMax?: number;
}

export class ConsoleClient extends EventEmitter {
  readonly clientId: string;
  offset = 0;
  private seq = 0;
  private unacked: Array<{ seq: number; data: Uint8Array }> = [];
  private unackedBytes = 0;
  private ws: WebSocket | undefined;
  private live: string | undefined;
  private urlIndex = 0;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;

  /** Another node to try when the current one goes away (e.g. a backup that joined later). */
  addUrl(url: string): void {
    if (!this.options.urls.includes(url)) this.options.urls.push(url);
  }

  constructor(private readonly options: ConsoleClientOptions) {
    super();
    this.clientId = options.clientId ?? randomUUID();
  }

  /** The URL of the live node this client is attached to, if any. */
  get connectedTo(): string | undefined {
    return this.live;
  }

  start(): void {
    this.connect();
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    this.ws?.terminate();
  }

  /** Types bytes on the console. False when too much input is unacknowledged (nothing queued). */
  send(bytes: Uint8Array): boolean {
    if (this.unackedBytes + bytes.length > (this.options.unackedBytesMax ?? 1 << 20)) return false;
    for (let i = 0; i < bytes.length; i += consoleInputBytesMax) {
      const u = { seq: ++this.seq, data: bytes.slice(i, i + consoleInputBytesMax) };
      this.unacked.push(u);
      this.unackedBytes += u.data.length;
      if (this.live) this.write({ type: "input", seq: u.seq, data: u.data });
    }
    return true;
  }

  private write(m: ConsoleClientMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encodeConsoleMessage(m));
  }

  private connect(): void {
    if (this.closed) return;
    const base = this.options.urls[this.urlIndex % this.options.urls.length]!;
    this.urlIndex++;
    const url = new URL("/console", base.replace(/^http/, "ws"));
    url.searchParams.set("token", this.options.token);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.binaryType = "nodebuffer";
    ws.on("message", (data: Buffer) => {
      let m;
      try {
        m = decodeConsoleServerMessage(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      } catch (e) {
        this.emit("warning", `bad frame from ${base}: ${e instanceof WireError ? e.code : ""} ${(e as Error).message}`);
        ws.terminate();
        return;
      }
      switch (m.type) {
        case "status":
          if (m.live && !this.live) {
            this.live = base;
            this.write({ type: "attach", clientId: this.clientId, offset: this.offset });
            for (const u of this.unacked) this.write({ type: "input", seq: u.seq, data: u.data });
            this.emit("attached", base, m.epoch);
          }
          break;
        case "output": {
          if (m.offset > this.offset) {
            this.emit("warning", `output gap: expected offset ${this.offset}, got ${m.offset}`);
            ws.terminate();
            return;
          }
          const skip = this.offset - m.offset;
          if (skip >= m.data.length) return;
          const fresh = m.data.subarray(skip);
          this.offset += fresh.length;
          this.emit("output", fresh);
          break;
        }
        case "inack":
          while (this.unacked.length > 0 && this.unacked[0]!.seq <= m.seq) this.unackedBytes -= this.unacked.shift()!.data.length;
          break;
      }
    });
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.ws !== ws) return;
      const was = this.live;
      this.live = undefined;
      if (was) this.emit("detached", was);
      if (!this.closed) this.timer = setTimeout(() => this.connect(), this.options.retryMs ?? 50);
    });
  }
}
