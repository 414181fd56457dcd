/**
 * DelayRelay: a TCP relay that delays what passes through it, both ways, for tests on a kernel
 * without netem. Each chunk is forwarded `delayMs` ± `jitterMs` (from a seed) after it arrived, and
 * never before the chunk ahead of it (TCP keeps order; a reordering link would only look like loss
 * and delay to TCP). Placed between two hosts of a NetLab (listening on the test's bridge address,
 * dialing the target host), it makes the round trip between them 2 × delayMs longer.
 * UDP on the same port number is relayed too, each datagram delayed the same way (the nodes' heartbeat
 * datagrams take the path of their logging channel): one upstream socket per client address.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, connect, type Server, type Socket } from "node:net";
import { SeededRandom } from "./seeded-random.js";

export interface DelayRelayOptions {
  listenHost: string;
  targetHost: string;
  targetPort: number;
  /** The address to dial from (default: the system's choice). */
  localAddress?: string;
  /** One-way delay added (ms). */
  delayMs: number;
  jitterMs?: number;
  seed?: number;
}

export class DelayRelay {
  private readonly server: Server;
  private readonly sockets = new Set<Socket>();
  private readonly random: SeededRandom;
  private readonly udp: UdpSocket = createSocket("udp4");
  /** Per client address (host:port): the socket its datagrams leave from towards the target. */
  private readonly upstreams = new Map<string, UdpSocket>();
  port = 0;

  constructor(private readonly options: DelayRelayOptions) {
    this.random = new SeededRandom(options.seed ?? 1);
    this.server = createServer((client) => {
      const upstream = connect({ port: options.targetPort, host: options.targetHost, ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
      for (const s of [client, upstream]) {
        s.setNoDelay(true);
        this.sockets.add(s);
        s.on("close", () => {
          this.sockets.delete(s);
          client.destroy();
          upstream.destroy();
        });
        s.on("error", () => {});
      }
      this.pipe(client, upstream);
      this.pipe(upstream, client);
    });
    this.udp.on("error", () => {});
    this.udp.on("message", (msg, rinfo) => {
      const key = `${rinfo.address}:${rinfo.port}`;
      let up = this.upstreams.get(key);
      if (!up) {
        const s = (up = createSocket("udp4"));
        s.on("error", () => {});
        s.on("message", (back) => this.later(() => this.udp.send(back, rinfo.port, rinfo.address, () => {})));
        s.bind(0, options.localAddress);
        this.upstreams.set(key, s);
      }
      const u = up;
      this.later(() => u.send(msg, options.targetPort, options.targetHost, () => {}));
    });
  }

  /** Runs `f` after the one-way delay (with jitter). */
  private later(f: () => void): void {
    const jitter = this.options.jitterMs ?? 0;
    setTimeout(f, Math.max(0, this.options.delayMs + (this.random.next() * 2 - 1) * jitter));
  }

  private pipe(from: Socket, to: Socket): void {
    let lastDueMs = 0;
    from.on("data", (chunk: Buffer) => {
      const jitter = this.options.jitterMs ?? 0;
      const dueMs = Math.max(lastDueMs, performance.now() + this.options.delayMs + (this.random.next() * 2 - 1) * jitter);
      lastDueMs = dueMs;
      setTimeout(() => to.writable && to.write(chunk), Math.max(0, dueMs - performance.now()));
    });
    from.on("end", () => setTimeout(() => to.end(), Math.max(0, lastDueMs - performance.now())));
  }

  listen(): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(0, this.options.listenHost, () => {
        this.port = (this.server.address() as { port: number }).port;
        this.udp.once("error", reject);
        this.udp.bind(this.port, this.options.listenHost, () => resolve(this.port));
      });
    });
  }

  close(): void {
    this.server.close();
    this.udp.close();
    for (const u of this.upstreams.values()) u.close();
    for (const s of this.sockets) s.destroy();
  }
}
