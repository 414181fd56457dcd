/**
 * The guest's console in the browser: the same exactly-once console protocol as `lockstep console`
 * (ConsoleCursor holds the offset and the unacknowledged input), over the browser's WebSocket. It
 * follows whichever node is live: it tries the candidates in the order the node watcher gives
 * (the node that says it is primary first), and after a takeover attaches to the new primary at the
 * offset it reached, so nothing is lost or repeated. A browser cannot send WebSocket pings: a node
 * that stopped answering (SIGSTOP, a partition) is given up when the watcher finds its /status
 * unreachable (`drop`).
 */
import { ConsoleCursor, refusedFrom, type ConsoleContradiction, type ConsoleGap } from "../../core/console-cursor.js";
import { decodeConsoleServerMessage, encodeConsoleMessage, type ConsoleClientMessage } from "../../wire/console-messages.js";

export interface WebConsoleEvents {
  output(bytes: Uint8Array): void;
  attached(url: string, epoch: number): void;
  detached(url: string): void;
  warning(text: string): void;
  contradiction(c: ConsoleContradiction): void;
  gap(g: ConsoleGap): void;
}

function randomId(): string {
  // crypto.randomUUID needs a secure context; a page from http://host:port of another machine is not one
  const b = crypto.getRandomValues(new Uint8Array(16));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function base64url(text: string): string {
  let bin = "";
  for (const b of new TextEncoder().encode(text)) bin += String.fromCharCode(b);
  return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class WebConsole {
  readonly clientId = randomId();
  private readonly cursor = new ConsoleCursor();
  private ws: WebSocket | undefined;
  private wsUrl: string | undefined;
  private live: string | undefined;
  private attempt = 0;
  private closed = false;
  private retry: ReturnType<typeof setTimeout> | undefined;
  private resend: ReturnType<typeof setInterval> | undefined;

  constructor(
    private readonly token: string,
    /** Node URLs to try, best first. */
    private readonly candidates: () => string[],
    private readonly on: Partial<WebConsoleEvents>,
  ) {}

  /** The node attached to, if any. */
  get attachedTo(): string | undefined {
    return this.live;
  }

  get offset(): number {
    return this.cursor.offset;
  }

  start(): void {
    this.connect();
  }

  /** Types bytes (`keys`: PS/2 scancodes for the guest's keyboard); false when too much input is unacknowledged. */
  send(bytes: Uint8Array, keys = false): boolean {
    const messages = this.cursor.input(bytes, keys);
    if (!messages) return false;
    if (this.live) for (const m of messages) this.write(m);
    return true;
  }

  /**
   * The node at `url` is unreachable: leave it for the others at once. (A stopped or cut-off node
   * never completes the closing handshake: waiting for `onclose` could take a minute.)
   */
  drop(url: string): void {
    const ws = this.ws;
    if (!ws || this.wsUrl !== url) return;
    this.ws = undefined;
    this.wsUrl = undefined;
    ws.onmessage = null;
    ws.onclose = null;
    ws.close();
    clearInterval(this.resend);
    const was = this.live;
    this.live = undefined;
    if (was) this.on.detached?.(was);
    clearTimeout(this.retry);
    if (!this.closed) this.retry = setTimeout(() => this.connect(), 50);
  }

  private write(m: ConsoleClientMessage): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(encodeConsoleMessage(m));
  }

  private connect(): void {
    if (this.closed) return;
    const urls = this.candidates();
    if (urls.length === 0) {
      this.retry = setTimeout(() => this.connect(), 250);
      return;
    }
    // the best candidate first after a loss, then round the others
    const base = urls[this.attempt++ % urls.length]!;
    let ws: WebSocket;
    try {
      ws = new WebSocket(new URL("/console", base.replace(/^http/, "ws")), ["lockstep.console", `bearer.${base64url(this.token)}`]);
    } catch (e) {
      this.on.warning?.(`${base}: ${(e as Error).message}`);
      this.retry = setTimeout(() => this.connect(), 250);
      return;
    }
    ws.binaryType = "arraybuffer";
    this.ws = ws;
    this.wsUrl = base;
    let attachedAt: number | undefined;
    let contradicted = false;
    ws.onmessage = (ev: MessageEvent) => {
      let m;
      try {
        m = decodeConsoleServerMessage(new Uint8Array(ev.data as ArrayBuffer));
      } catch (e) {
        this.on.warning?.(`bad frame from ${base}: ${(e as Error).message}`);
        ws.close();
        return;
      }
      switch (m.type) {
        case "status":
          if (m.live && !this.live) {
            this.live = base;
            this.attempt = 0;
            attachedAt = this.cursor.attachOffset(base);
            this.write({ type: "attach", clientId: this.clientId, offset: attachedAt });
            for (const p of this.cursor.pending()) this.write(p);
            this.watchAcks();
            this.on.attached?.(base, m.epoch);
          }
          break;
        case "output": {
          const r = this.cursor.output(m.offset, m.data, base, !contradicted);
          if (r.type === "gap") {
            this.on.warning?.(`output gap: expected offset ${r.expected}, got ${r.got}`);
            ws.close();
            return;
          }
          if (r.contradiction) {
            contradicted = true;
            this.on.contradiction?.(r.contradiction);
          }
          if (r.type === "fresh") this.on.output?.(r.bytes);
          break;
        }
        case "inack":
          this.cursor.acknowledged(m.seq);
          break;
      }
    };
    ws.onclose = (ev: CloseEvent) => {
      if (this.ws !== ws) return;
      if (ev.code === 4002 && attachedAt !== undefined) {
        const gap = this.cursor.refused(base, attachedAt, refusedFrom(ev.reason));
        if (gap) this.on.gap?.(gap);
      }
      clearInterval(this.resend);
      const was = this.live;
      this.live = undefined;
      this.ws = undefined;
      this.wsUrl = undefined;
      if (was) this.on.detached?.(was);
      if (!this.closed) this.retry = setTimeout(() => this.connect(), was ? 50 : 200);
    };
  }

  /** Input that saw no acknowledgement for a second is sent again (the node drops repeats). */
  private watchAcks(): void {
    clearInterval(this.resend);
    let oldest = this.cursor.oldestPending;
    this.resend = setInterval(() => {
      const now = this.cursor.oldestPending;
      if (now !== undefined && now === oldest && this.live) for (const m of this.cursor.pending()) this.write(m);
      oldest = now;
    }, 1000);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retry);
    clearInterval(this.resend);
    this.ws?.close();
  }
}
