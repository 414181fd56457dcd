/**
 * ConsoleClient: follows whichever node is live among the URLs it knows. It keeps the output offset
 * it reached and the input not yet acknowledged; on every (re)connection it attaches at that offset
 * and resends that input, so output is neither lost nor repeated across a failover and acknowledged
 * input is applied exactly once (the server drops sequence numbers it already applied).
 *
 * It also checks the output rule from the outside: on a re-attach it asks for output from a little
 * before the offset it reached, and the bytes resent must equal the bytes it received. A node that
 * released output its backup never logged would, after a takeover, resend different bytes at the
 * same offsets; the client reports that as a "contradiction" (it cannot take back what it already
 * passed on) and passes on only the bytes after its offset.
 *
 * Input a node dropped (its queue to the machine was full) is resent when no acknowledgement came
 * for `resendMs`. Output that no live node holds any more (the client was further behind than the
 * node keeps) cannot be had: the client reports it as a "gap" and goes on from the oldest byte the
 * node holds, instead of asking for it forever. A node that answers no ping for `deadAfterMs` (stopped,
 * or cut off by a partition: its connection never closes) is left for the others.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { WebSocket } from "ws";
import { WireError } from "../wire/envelope.js";
import { decodeConsoleServerMessage, encodeConsoleMessage, type ConsoleClientMessage } from "../wire/console-messages.js";
import { ConsoleCursor, refusedFrom, type ConsoleContradiction, type ConsoleGap } from "../core/console-cursor.js";

export type { ConsoleContradiction, ConsoleGap };

export interface ConsoleClientOptions {
  urls: string[];
  /** The console credential. */
  token: string;
  /** Certificates to trust for wss:// nodes (PEM; default: the system's). */
  ca?: Buffer;
  clientId?: string;
  /** Reconnect delay after a failed or lost connection. */
  retryMs?: number;
  /** Input not yet acknowledged, at most (backpressure: `send` returns false beyond it). */
  unackedBytesMax?: number;
  /** How much output before its offset the client asks for again on a re-attach, to compare (default 4096; 0: no check). */
  overlapBytes?: number;
  /** Unacknowledged input is sent again when no acknowledgement came for this long (default 1000 ms). */
  resendMs?: number;
  /**
   * A node that answered neither a ping nor anything else for this long is given up (default
   * 3000 ms; pinged every third of it): a node that is stopped (SIGSTOP) or cut off by a partition
   * never closes its connection, and the client would stay attached to it for ever.
   */
  deadAfterMs?: number;
}

export class ConsoleClient extends EventEmitter {
  readonly clientId: string;
  private readonly cursor: ConsoleCursor;
  private ws: WebSocket | undefined;
  private live: string | undefined;
  private urlIndex = 0;
  private closed = false;
  private timer: NodeJS.Timeout | undefined;
  private resendTimer: NodeJS.Timeout | undefined;
  /** Input bytes sent again because no acknowledgement came (a node dropped them), in total. */
  resentBytes = 0;

  /** Another node to try when the current one goes away (e.g. a backup that joined later). */
  addUrl(url: string): void {
    if (!this.options.urls.includes(url)) this.options.urls.push(url);
  }

  constructor(private readonly options: ConsoleClientOptions) {
    super();
    this.clientId = options.clientId ?? randomUUID();
    this.cursor = new ConsoleCursor(options);
  }

  /** The output offset reached. */
  get offset(): number {
    return this.cursor.offset;
  }

  /** Output bytes compared with a node's resend after re-attaches, in total. */
  get overlapCheckedBytes(): number {
    return this.cursor.overlapCheckedBytes;
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
    clearInterval(this.resendTimer);
    this.ws?.terminate();
  }

  /**
   * Types bytes on the console (`keys`: PS/2 scancodes for the guest's keyboard, the screen's console).
   * False when too much input is unacknowledged (nothing queued).
   */
  send(bytes: Uint8Array, keys = false): boolean {
    const messages = this.cursor.input(bytes, keys);
    if (!messages) return false;
    if (this.live) for (const m of messages) this.write(m);
    return true;
  }

  /** While attached: input that saw no acknowledgement for `resendMs` is sent again (the node drops repeats). */
  private watchAcks(): void {
    clearInterval(this.resendTimer);
    let oldest = this.cursor.oldestPending;
    this.resendTimer = setInterval(() => {
      const now = this.cursor.oldestPending;
      if (now !== undefined && now === oldest && this.live) {
        for (const m of this.cursor.pending()) {
          this.write(m);
          if (m.type === "input") this.resentBytes += m.data.length;
        }
      }
      oldest = now;
    }, this.options.resendMs ?? 1000);
    this.resendTimer.unref();
  }

  private write(m: ConsoleClientMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encodeConsoleMessage(m));
  }

  private connect(): void {
    if (this.closed) return;
    const base = this.options.urls[this.urlIndex % this.options.urls.length]!;
    this.urlIndex++;
    const url = new URL("/console", base.replace(/^http/, "ws"));
    const ws = new WebSocket(url, { headers: { authorization: `Bearer ${this.options.token}` }, ...(this.options.ca ? { ca: this.options.ca } : {}) });
    this.ws = ws;
    const deadAfterMs = this.options.deadAfterMs ?? 3000;
    let heardAtMs = performance.now();
    const heard = () => (heardAtMs = performance.now());
    const pinger = setInterval(() => {
      if (ws.readyState !== WebSocket.OPEN) return;
      if (performance.now() - heardAtMs > deadAfterMs) {
        this.emit("warning", `${base} answered nothing for ${deadAfterMs} ms: trying the others`);
        ws.terminate();
        return;
      }
      ws.ping();
    }, deadAfterMs / 3);
    pinger.unref();
    ws.on("open", heard);
    ws.on("pong", heard);
    let attachedAt: number | undefined;
    let contradicted = false;
    ws.binaryType = "nodebuffer";
    ws.on("message", (data: Buffer) => {
      heard();
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
            attachedAt = this.cursor.attachOffset(base);
            this.write({ type: "attach", clientId: this.clientId, offset: attachedAt });
            for (const p of this.cursor.pending()) this.write(p);
            this.watchAcks();
            this.emit("attached", base, m.epoch);
          }
          break;
        case "output": {
          const r = this.cursor.output(m.offset, m.data, base, !contradicted && (this.options.overlapBytes ?? 4096) > 0);
          if (r.type === "gap") {
            this.emit("warning", `output gap: expected offset ${r.expected}, got ${r.got}`);
            ws.terminate();
            return;
          }
          if (r.contradiction) {
            contradicted = true;
            this.emit("contradiction", r.contradiction);
          }
          if (r.type === "fresh") this.emit("output", r.bytes);
          break;
        }
        case "inack":
          this.cursor.acknowledged(m.seq);
          break;
      }
    });
    ws.on("error", () => {});
    ws.on("close", (code: number, reason: Buffer) => {
      clearInterval(pinger);
      if (this.ws !== ws) return;
      // 4002: the node no longer holds the offset asked for (a backup that joined from a checkpoint
      // holds output only from a little before it on); it says what it has: ask from there next time
      if (code === 4002 && attachedAt !== undefined) {
        // the live node does not hold what this client has not read, and no other node is live: lost
        const gap = this.cursor.refused(base, attachedAt, refusedFrom(reason.toString()));
        if (gap) {
          this.emit("warning", `console output ${gap.from}..${gap.to} is held by no live node: skipped`);
          this.emit("gap", gap);
        }
      }
      clearInterval(this.resendTimer);
      const was = this.live;
      this.live = undefined;
      if (was) this.emit("detached", was);
      if (!this.closed) this.timer = setTimeout(() => this.connect(), this.options.retryMs ?? 50);
    });
  }
}
