/**
 * PeerLink: the one WebSocket between a node and its peer, carrying peer-protocol frames.
 *
 *   backup   dials the primary's /peer, and again 100 ms after every close, as long as the node
 *            says it may (it waits for or follows a primary)
 *   primary  takes connections on /peer (refused with 4001 when not the primary); each is only a
 *            candidate until the node adopts it, replacing the current peer, or refuses it (4003)
 *
 * Frames in are decoded here (one that does not decode closes its connection with 1008) and
 * reported to the node with the connection they came on; frames out go to the current peer only.
 * Bytes both ways are counted for the node's status.
 */
import type { IncomingMessage } from "node:http";
import type { Logger } from "pino";
import { WebSocket } from "ws";
import { decodePeerMessage, encodePeerMessage, type PeerMessage } from "../wire/peer-messages.js";
import { decodeIncoming } from "./incoming-frame.js";

export interface PeerLinkEvents {
  /** Backup: whether to dial the primary (again) now. */
  mayDial(): boolean;
  /** Backup: the connection to the primary is up. */
  connected(): void;
  /** Whether to take a connection from a backup (only the primary does). */
  mayAccept(): boolean;
  /** A decoded message, and the connection it came on (the peer's, or a candidate's). */
  message(msg: PeerMessage, from: WebSocket): void;
  /** Primary: the peer's connection closed. */
  disconnected(): void;
  /** Backup: the primary refused it for good (close code 4004): it must not dial again. */
  refusedForGood(reason: string): void;
}

/** Close code of a refusal that will not change (another arbiter): the backup stops. */
const refusedForGoodCode = 4004;

export class PeerLink {
  private peer: WebSocket | undefined;
  private reconnectTimer: NodeJS.Timeout | undefined;
  /** The node is shutting down: no dial from here on, whatever closes. */
  private closed = false;
  bytesSent = 0;
  bytesReceived = 0;

  constructor(
    private readonly log: Logger,
    private readonly events: PeerLinkEvents,
  ) {}

  /** The peer's connection, if one is up. */
  get connection(): WebSocket | undefined {
    return this.peer;
  }

  /** Backup: dials the primary at `address` (ws://host:port), and again 100 ms after every close. */
  dial(address: string, token: string, ca?: Buffer): void {
    if (this.closed || !this.events.mayDial()) return;
    const url = new URL("/peer", address.replace(/^http/, "ws"));
    const ws = new WebSocket(url, { maxPayload: 64 * 2 ** 20, headers: { authorization: `Bearer ${token}` }, ...(ca ? { ca } : {}) });
    ws.binaryType = "nodebuffer";
    ws.on("open", () => {
      this.peer = ws;
      this.log.info({ primary: address }, "connected to the primary");
      this.events.connected();
    });
    ws.on("message", (data: Buffer) => this.onFrame(data, ws));
    ws.on("error", () => {});
    ws.on("close", (code: number, reason: Buffer) => {
      if (this.peer === ws) this.peer = undefined;
      clearTimeout(this.reconnectTimer);
      if (code === refusedForGoodCode) return this.events.refusedForGood(reason.toString());
      if (!this.closed) this.reconnectTimer = setTimeout(() => this.dial(address, token, ca), 100);
    });
  }

  /**
   * Primary: a backup connection is only a candidate until the node adopts it; so a stray or hostile
   * connection (even with the token) cannot cut off the backup.
   */
  accept(ws: WebSocket, req: IncomingMessage): void {
    if (!this.events.mayAccept()) {
      ws.close(4001, "not the primary");
      return;
    }
    this.log.info({ remote: req.socket.remoteAddress }, "peer connection");
    ws.on("message", (data: Buffer) => this.onFrame(data, ws));
    ws.on("error", () => {});
    ws.on("close", () => {
      if (this.peer === ws) {
        this.peer = undefined;
        this.events.disconnected();
      }
    });
  }

  isPeer(ws: WebSocket): boolean {
    return ws === this.peer;
  }

  /** A candidate becomes the peer; the connection it replaces is cut. */
  adopt(ws: WebSocket): void {
    if (this.peer && this.peer !== ws) this.peer.terminate();
    this.peer = ws;
  }

  /** `forGood`: the backup can never be accepted (4004: it stops dialing); otherwise 4003. */
  refuse(ws: WebSocket, reason: string, forGood = false): void {
    // a close reason is at most 123 bytes
    ws.close(forGood ? refusedForGoodCode : 4003, Buffer.from(reason).subarray(0, 123).toString());
  }

  /** Sends to the peer if its connection is open; otherwise the message is dropped. */
  send(message: PeerMessage): void {
    const bytes = encodePeerMessage(message);
    if (this.peer?.readyState !== WebSocket.OPEN) return;
    this.bytesSent += bytes.byteLength;
    this.peer.send(bytes);
  }

  /** Takeover: the link to the old primary is cut at once. */
  drop(): void {
    this.terminate();
    this.peer = undefined;
    this.stopDialing();
  }

  /** Cuts the peer's connection (it counts as the peer until its close is reported). */
  terminate(): void {
    this.peer?.terminate();
  }

  /** No redial is pending any more (a close after this schedules one again, which `mayDial` decides). */
  stopDialing(): void {
    clearTimeout(this.reconnectTimer);
  }

  /** The node shuts down: no redial now or after any later close (the connection itself stays up until `terminate`). */
  close(): void {
    this.closed = true;
    this.stopDialing();
  }

  private onFrame(data: Buffer, ws: WebSocket): void {
    this.bytesReceived += data.byteLength;
    const msg = decodeIncoming(ws, data, decodePeerMessage, (code, why) => this.log.warn({ code, bytes: data.byteLength }, `peer frame rejected: ${why}`));
    if (msg) this.events.message(msg, ws);
  }
}
