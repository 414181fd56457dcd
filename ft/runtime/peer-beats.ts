/**
 * PeerBeats: the node's UDP socket for heartbeat datagrams (wire/peer-beat.ts), bound to the same port
 * number as its HTTP server. A backup sends to the address it dials (the primary's, or a relay's on the
 * way); a primary answers to the address its backup's datagrams come from, so NAT and relays work
 * without configuring anything. Where UDP cannot be bound the node goes on without it: failure
 * detection then rests on the logging channel alone, as before.
 */
import { createSocket, type RemoteInfo, type Socket } from "node:dgram";
import { lookup } from "node:dns/promises";
import { isIP, isIPv6 } from "node:net";
import type { Logger } from "pino";
import { decodePeerBeat, encodePeerBeat } from "../wire/peer-beat.js";

export interface PeerBeatEvents {
  /** An authenticated datagram, newer than any before it from that node. */
  beat(nodeId: string, epoch: number): void;
}

/** Refusals said in the log at most this often. */
const refusalLogMs = 10_000;

export class PeerBeats {
  private socket: Socket | undefined;
  /** Where each peer's datagrams came from last. */
  private readonly from = new Map<string, { address: string; port: number }>();
  /** The newest `at` accepted per node (a replayed datagram is older). */
  private readonly newest = new Map<string, number>();
  /** Backup: the address it dials. */
  private target: { address: string; port: number } | undefined;
  private refusalSaidMs = Number.NEGATIVE_INFINITY;
  /** The bound socket's address family (a name is resolved to it). */
  private family: 4 | 6 = 4;
  sent = 0;
  received = 0;
  /** Datagrams that are not a peer's beat (bad MAC, another version, not a heartbeat at all). */
  refused = 0;
  /** Beats older than one already heard: reordered on the way (UDP may), duplicated or replayed. Ignored. */
  stale = 0;

  constructor(
    private readonly log: Logger,
    private readonly nodeId: string,
    private readonly key: string,
    private readonly events: PeerBeatEvents,
    private readonly clock: () => number,
  ) {}

  /** Binds UDP `host`:`port`; on failure says so and stays off. */
  async bind(host: string, port: number): Promise<boolean> {
    this.family = isIPv6(host) ? 6 : 4;
    const socket = createSocket({ type: this.family === 6 ? "udp6" : "udp4" });
    socket.on("message", (msg, rinfo) => this.onDatagram(msg, rinfo));
    socket.on("error", (e) => this.log.warn({ err: e.message }, "heartbeat datagram socket error"));
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("error", reject);
        socket.bind(port, host, () => {
          socket.off("error", reject);
          resolve();
        });
      });
    } catch (e) {
      socket.close();
      this.log.warn({ host, port, err: (e as Error).message }, "no heartbeat datagrams (UDP port unavailable): failure detection rests on the logging channel alone");
      return false;
    }
    this.socket = socket;
    return true;
  }

  /**
   * Backup: datagrams for the primary go to where `url` (ws[s]://host:port) points, its name resolved
   * once (not at every datagram); until then, and if it does not resolve, none are sent.
   */
  dialing(url: string): void {
    const u = new URL(url);
    const port = u.port !== "" ? Number(u.port) : u.protocol === "wss:" || u.protocol === "https:" ? 443 : 80;
    const host = u.hostname.replace(/^\[|\]$/g, "");
    this.target = undefined;
    if (isIP(host)) this.target = { address: host, port };
    else {
      lookup(host, { family: this.family }).then(
        (a) => (this.target = { address: a.address, port }),
        (e: Error) => this.log.warn({ host, err: e.message }, "no heartbeat datagrams to the primary: its name does not resolve"),
      );
    }
  }

  /** A datagram of `epoch` to the node `to`: where its datagrams come from, else the address dialed. */
  send(to: string, epoch: number): void {
    const where = this.from.get(to) ?? this.target;
    if (!this.socket || !where) return;
    let bytes: Buffer;
    try {
      bytes = encodePeerBeat({ nodeId: this.nodeId, epoch, at: this.clock() }, this.key);
    } catch {
      return; // a node id too long for a datagram: the channel alone
    }
    this.sent++;
    this.socket.send(bytes, where.port, where.address, () => {});
  }

  close(): void {
    this.socket?.close();
    this.socket = undefined;
  }

  private onDatagram(msg: Buffer, rinfo: RemoteInfo): void {
    const beat = decodePeerBeat(msg, this.key);
    const newest = "nodeId" in beat ? (this.newest.get(beat.nodeId) ?? Number.NEGATIVE_INFINITY) : 0;
    if (!("refused" in beat) && beat.at <= newest) {
      this.stale++; // says nothing newer: a network that reorders datagrams makes these, no warning
      return;
    }
    if ("refused" in beat) {
      this.refused++;
      const now = this.clock();
      if (now - this.refusalSaidMs >= refusalLogMs) {
        this.refusalSaidMs = now;
        this.log.warn({ from: `${rinfo.address}:${rinfo.port}`, why: beat.refused }, "heartbeat datagram refused");
      }
      return;
    }
    this.newest.set(beat.nodeId, beat.at);
    this.from.set(beat.nodeId, { address: rinfo.address, port: rinfo.port });
    this.received++;
    this.events.beat(beat.nodeId, beat.epoch);
  }
}
