// The NBD client under server faults, driven through the DiskScheduler (its retries are the only
// recovery path the primary has): a connection cut in the middle of a reply, a server that goes
// silent, one that answers late on a connection the client gave up on, one that never finishes the
// handshake, one that refuses connections for a while, and close() with a hung server. Each time the
// guest's requests complete with the right data once the fault heals, nothing stays in flight, and
// the log says what happened. A small fake server (below) makes the faults exact and fast; the last
// case freezes and restarts a real nbdkit.
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino } from "pino";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { until } from "../../ft/runtime/until.js";
import { DiskScheduler } from "../../hypervisor/disk/disk-scheduler.js";
import { NbdDiskBackend, type NbdOptions } from "../../hypervisor/disk/nbd-backend.js";

const dir = mkdtempSync(join(tmpdir(), "nbd-faults-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const diskBytes = 1 << 20;
/** A disk whose every sector reads differently. */
const pattern = () => {
  const b = Buffer.alloc(diskBytes);
  for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 9)) & 0xff;
  return b;
};

// ---- a fake NBD server: fixed newstyle, NBD_OPT_GO, simple replies ----

const NBDMAGIC = 0x4e42444d41474943n;
const IHAVEOPT = 0x49484156454f5054n;
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const SIMPLE_REPLY_MAGIC = 0x67446698;

interface FakeRequest {
  cmd: number;
  cookie: Buffer;
  offset: number;
  length: number;
  data: Buffer | undefined;
}

class FakeConnection {
  closed = false;
  readonly requests: FakeRequest[] = [];
  constructor(
    readonly index: number,
    readonly socket: Socket,
    private readonly image: Buffer,
  ) {
    socket.on("close", () => (this.closed = true));
    socket.on("error", () => {});
  }

  /** A simple reply, as raw bytes (a test may send part of it). */
  replyBytes(cookie: Buffer, data?: Buffer): Buffer {
    const head = Buffer.alloc(16);
    head.writeUInt32BE(SIMPLE_REPLY_MAGIC, 0);
    head.writeUInt32BE(0, 4);
    cookie.copy(head, 8);
    return data ? Buffer.concat([head, data]) : head;
  }

  send(bytes: Buffer): void {
    if (!this.closed) this.socket.write(bytes);
  }

  /** Carries the request out on the image and replies as a healthy server would. */
  answer(r: FakeRequest): void {
    if (r.cmd === 1) {
      r.data!.copy(this.image, r.offset);
      this.send(this.replyBytes(r.cookie));
    } else this.send(this.replyBytes(r.cookie, Buffer.from(this.image.subarray(r.offset, r.offset + r.length))));
  }
}

class FakeNbdServer {
  readonly image = pattern();
  readonly connections: FakeConnection[] = [];
  /** "hang": accept connections but never send the greeting. */
  handshake: "answer" | "hang" = "answer";
  /** A hung server does not even close its side when the client closes its own. */
  hung = false;
  /** What happens to each request (default: answered). */
  onRequest: (r: FakeRequest, c: FakeConnection) => void = (r, c) => c.answer(r);
  private server: Server | undefined;
  readonly path: string;

  constructor(name: string) {
    this.path = join(dir, `${name}.sock`);
  }

  get url(): string {
    return `nbd+unix:///?socket=${this.path}`;
  }

  async listen(): Promise<void> {
    this.server = createServer({ allowHalfOpen: true }, (s) => this.serve(s));
    await new Promise<void>((resolve) => this.server!.listen(this.path, resolve));
  }

  /** No new connections (the socket file goes: ENOENT) and every open one cut. */
  async stop(): Promise<void> {
    const closed = new Promise((r) => this.server!.close(r));
    for (const c of this.connections) c.socket.destroy();
    await closed;
  }

  private serve(socket: Socket): void {
    const c = new FakeConnection(this.connections.length, socket, this.image);
    this.connections.push(c);
    socket.on("end", () => {
      if (!this.hung) socket.end();
    });
    if (this.handshake === "hang") return;
    const hello = Buffer.alloc(18);
    hello.writeBigUInt64BE(NBDMAGIC, 0);
    hello.writeBigUInt64BE(IHAVEOPT, 8);
    hello.writeUInt16BE(1 | 2, 16); // fixed newstyle, no zeroes
    socket.write(hello);
    let buf = Buffer.alloc(0);
    let phase: "flags" | "options" | "transmission" = "flags";
    socket.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      for (;;) {
        if (phase === "flags") {
          if (buf.length < 4) return;
          buf = buf.subarray(4);
          phase = "options";
        } else if (phase === "options") {
          if (buf.length < 16 || buf.length < 16 + buf.readUInt32BE(12)) return;
          const option = buf.readUInt32BE(8);
          buf = buf.subarray(16 + buf.readUInt32BE(12));
          if (option !== 7) throw new Error(`the fake server knows only NBD_OPT_GO, not ${option}`);
          const info = Buffer.alloc(20 + 12);
          info.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
          info.writeUInt32BE(7, 8);
          info.writeUInt32BE(3, 12); // NBD_REP_INFO
          info.writeUInt32BE(12, 16);
          info.writeUInt16BE(0, 20); // NBD_INFO_EXPORT
          info.writeBigUInt64BE(BigInt(this.image.length), 22);
          info.writeUInt16BE(1, 30); // has flags; writable
          const ack = Buffer.alloc(20);
          ack.writeBigUInt64BE(OPT_REPLY_MAGIC, 0);
          ack.writeUInt32BE(7, 8);
          ack.writeUInt32BE(1, 12); // NBD_REP_ACK
          socket.write(Buffer.concat([info, ack]));
          phase = "transmission";
        } else {
          if (buf.length < 28) return;
          const cmd = buf.readUInt16BE(6);
          const length = buf.readUInt32BE(24);
          const total = 28 + (cmd === 1 ? length : 0);
          if (buf.length < total) return;
          const r: FakeRequest = { cmd, cookie: Buffer.from(buf.subarray(8, 16)), offset: Number(buf.readBigUInt64BE(16)), length, data: cmd === 1 ? Buffer.from(buf.subarray(28, total)) : undefined };
          buf = buf.subarray(total);
          if (cmd === 2) {
            if (!this.hung) socket.end(); // NBD_CMD_DISC
            return;
          }
          c.requests.push(r);
          this.onRequest(r, c);
        }
      }
    });
  }
}

// ---- the client as the primary drives it ----

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** Small timeouts: faults show within a few hundred ms. */
const fast = { connectTimeoutMs: 500, requestTimeoutMs: 400, reconnectMinMs: 10, reconnectMaxMs: 40 };

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function client(url: string, options: Partial<NbdOptions> = {}) {
  const lines: LogLine[] = [];
  const logger = pino({ level: "debug" }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  const backend = await NbdDiskBackend.connect(url, { logger, ...fast, ...options });
  cleanups.push(() => backend.close());
  const reads = new Map<number, Buffer>();
  const writes = new Set<number>();
  const stalls: Array<string | undefined> = [];
  const scheduler = new DiskScheduler(backend, { onRead: (id, d) => reads.set(id, Buffer.from(d)), onWrite: (id) => writes.add(id), onStall: (r) => stalls.push(r), retryMs: 20 });
  scheduler.release(Number.POSITIVE_INFINITY);
  cleanups.push(() => scheduler.close());
  const settled = (what: string) => until(() => scheduler.outstanding === 0, 10_000, () => `${what}: ${scheduler.outstanding} requests outstanding (stalled: ${scheduler.stalled})`);
  const logged = (re: RegExp) => lines.filter((l) => re.test(l.msg));
  return { backend, scheduler, reads, writes, stalls, lines, settled, logged };
}

async function fakeServer(name: string): Promise<FakeNbdServer> {
  const s = new FakeNbdServer(name);
  await s.listen();
  cleanups.push(() => s.stop());
  return s;
}

const read = (id: number, sector: number): DiskRequest => ({ id, op: "read", offset: sector * 512, length: 512 });
const write = (id: number, sector: number, fill: number): DiskRequest => ({ id, op: "write", offset: sector * 512, length: 512, data: new Uint8Array(512).fill(fill) });
const sectorOf = (image: Buffer, sector: number) => image.subarray(sector * 512, sector * 512 + 512);
const WARN = 40;
const INFO = 30;

describe("NBD client faults", () => {
  it("a connection cut in the middle of a read's data fails that read with the others instead of leaving it pending for ever; the retries read the right data", async () => {
    const server = await fakeServer("cut-data");
    const c = await client(server.url);
    // the first connection gets three reads, answers the first with half its data and dies
    server.onRequest = (r, conn) => {
      if (conn.index > 0) return conn.answer(r);
      if (conn.requests.length < 3) return;
      const first = conn.requests[0]!;
      conn.send(conn.replyBytes(first.cookie, Buffer.from(server.image.subarray(first.offset, first.offset + 256))));
      conn.socket.destroy();
    };
    c.scheduler.submit([read(1, 10), read(2, 20), read(3, 30)], 0);
    await c.settled("the reads after the cut");
    for (const [id, sector] of [[1, 10], [2, 20], [3, 30]] as const) expect(c.reads.get(id)).toEqual(sectorOf(server.image, sector));
    expect(c.backend.inFlight).toBe(0);
    expect(c.logged(/^NBD connection lost: 3 requests in flight will be retried$/)).toHaveLength(1);
    expect(c.logged(/^NBD connection lost/)[0]).toMatchObject({ level: WARN, url: server.url });
    expect(c.logged(/^NBD reconnected after 1 attempt$/)[0]).toMatchObject({ level: INFO, url: server.url, attempts: 1 });
    expect(c.stalls[0]).toMatch(/the NBD connection was lost/); // the scheduler saw the failure and the recovery
    expect(c.stalls.at(-1)).toBeUndefined();
  });

  it("a connection cut in the middle of a reply header fails every request in flight at once and says how many will be retried (the loss went unlogged)", async () => {
    const server = await fakeServer("cut-header");
    const c = await client(server.url);
    server.onRequest = (r, conn) => {
      if (conn.index > 0) return conn.answer(r);
      if (conn.requests.length < 3) return;
      conn.send(conn.replyBytes(conn.requests[1]!.cookie).subarray(0, 8));
      conn.socket.destroy();
    };
    c.scheduler.submit([read(1, 1), write(2, 2, 0x5a), read(3, 3)], 0);
    await c.settled("the requests after the cut");
    expect(c.logged(/^NBD connection lost: 3 requests in flight will be retried$/)[0]).toMatchObject({ level: WARN, url: server.url, inFlight: 3 });
    expect(c.reads.get(1)).toEqual(sectorOf(server.image, 1));
    expect(c.reads.get(3)).toEqual(sectorOf(server.image, 3));
    expect(c.writes.has(2)).toBe(true);
    expect(sectorOf(server.image, 2)).toEqual(Buffer.alloc(512, 0x5a));
    expect(c.backend.inFlight).toBe(0);
  });

  it("a server that goes silent after the handshake: the write times out (it waited for ever), the connection is re-made, and write then read land in order", async () => {
    const server = await fakeServer("silent");
    const c = await client(server.url);
    server.onRequest = (r, conn) => {
      if (conn.index > 0) conn.answer(r); // the first connection swallows everything
    };
    c.scheduler.submit([write(1, 7, 0xa7), read(2, 7)], 0);
    await c.settled("the write and read after the timeout");
    expect(c.writes.has(1)).toBe(true);
    expect(c.reads.get(2)).toEqual(Buffer.alloc(512, 0xa7));
    expect(c.backend.inFlight).toBe(0);
    await until(() => server.connections[0]!.closed, 10_000, "the hung connection to be closed"); // not kept
    expect(c.logged(/^NBD server did not answer within 400ms: reconnecting$/)[0]).toMatchObject({ level: WARN, url: server.url });
    expect(c.logged(/^NBD reconnected after 1 attempt$/)).toHaveLength(1);
  });

  it("a late reply on a connection the client gave up on never completes a newer request (it would take the wrong data)", async () => {
    const server = await fakeServer("late");
    const c = await client(server.url);
    let held: { r: FakeRequest; conn: FakeConnection } | undefined;
    server.onRequest = (r, conn) => {
      if (!held) {
        held = { r, conn }; // unanswered until the client retries
        return;
      }
      // the retry: the held connection answers late, with garbage under the retry's cookie and
      // its own, before the retry is answered properly
      held.conn.send(held.conn.replyBytes(r.cookie, Buffer.alloc(r.length, 0xee)));
      held.conn.send(held.conn.replyBytes(held.r.cookie, Buffer.alloc(held.r.length, 0xee)));
      setTimeout(() => conn.answer(r), 20);
    };
    c.scheduler.submit([read(1, 9)], 0);
    await c.settled("the read after the late reply");
    expect(c.reads.get(1)).toEqual(sectorOf(server.image, 9));
    expect(c.backend.inFlight).toBe(0);
    expect(c.logged(/^NBD server did not answer within 400ms: reconnecting$/)).toHaveLength(1);
  });

  it("a server that never finishes the handshake: opening fails after the connect timeout (it waited for ever), and so does a reconnect, until the server answers", async () => {
    const server = await fakeServer("mute");
    server.handshake = "hang";
    const opening = NbdDiskBackend.connect(server.url, { logger: pino({ level: "silent" }), ...fast });
    await expect(opening).rejects.toThrow(LockstepError);
    await expect(opening).rejects.toMatchObject({ code: ErrorCode.diskUnreadable, message: `NBD disk ${server.url} cannot be opened: no handshake within 500 ms` });

    server.handshake = "answer";
    const c = await client(server.url);
    server.handshake = "hang";
    const accepted = server.connections.length;
    server.connections.at(-1)!.socket.destroy(); // the connection drops; the server hangs new ones
    c.scheduler.submit([read(1, 4)], 0);
    await until(() => server.connections.length >= accepted + 2, 10_000, "two reconnect attempts");
    server.handshake = "answer";
    await c.settled("the read once the server answers");
    expect(c.reads.get(1)).toEqual(sectorOf(server.image, 4));
    expect(c.backend.inFlight).toBe(0);
    expect(c.logged(/^NBD reconnect attempt 1 failed: no handshake within 500 ms$/)[0]).toMatchObject({ level: WARN, url: server.url, attempt: 1 });
    expect(c.logged(/^NBD reconnected after \d+ attempts$/)[0]!.attempts).toBeGreaterThanOrEqual(3);
  });

  it("a server refusing connections for a while: many reconnect attempts with one log line (a dead server flooded nothing, but went unlogged), and the read succeeds when it is back", async () => {
    const server = await fakeServer("refusing");
    const c = await client(server.url);
    await server.stop();
    await until(() => c.logged(/^NBD connection lost: 0 requests in flight will be retried$/).length === 1, 10_000, "the loss to be noticed");
    c.scheduler.submit([read(1, 12), write(2, 13, 0x13)], 0);
    await until(() => c.backend.reconnectAttempts >= 5, 10_000, "five reconnect attempts"); // four failed
    expect(c.scheduler.outstanding).toBe(2);
    await server.listen();
    await c.settled("the requests once the server is back");
    expect(c.reads.get(1)).toEqual(sectorOf(server.image, 12));
    expect(sectorOf(server.image, 13)).toEqual(Buffer.alloc(512, 0x13));
    expect(c.backend.inFlight).toBe(0);
    expect(c.logged(/^NBD connection lost/)).toHaveLength(1);
    expect(c.logged(/^NBD reconnect attempt \d+ failed/)).toEqual([expect.objectContaining({ level: WARN, url: server.url, attempt: 1, error: "ENOENT" })]);
    const back = c.logged(/^NBD reconnected after \d+ attempts$/);
    expect(back).toHaveLength(1);
    expect(back[0]!.attempts).toBeGreaterThanOrEqual(5);
  });

  it("close() with a hung server fails the request in flight (it stayed pending for ever) and closes the connection", async () => {
    const server = await fakeServer("hung-close");
    const c = await client(server.url, { requestTimeoutMs: 60_000 });
    server.hung = true;
    server.onRequest = () => {};
    let outcome: unknown = "pending";
    c.backend.read(0, 512).then(
      () => (outcome = "answered"),
      (e: unknown) => (outcome = e),
    );
    await until(() => server.connections[0]!.requests.length === 1, 10_000, "the request to reach the server");
    await c.backend.close();
    await until(() => outcome !== "pending", 10_000, "the request in flight to settle");
    expect(outcome).toMatchObject({ code: ErrorCode.diskBackend, message: "the NBD disk was closed" });
    expect(c.backend.inFlight).toBe(0);
    const conn = server.connections[0]!;
    conn.send(conn.replyBytes(conn.requests[0]!.cookie, Buffer.alloc(512))); // the client is gone: this fails
    await until(() => conn.closed, 10_000, "the connection to close");
    await expect(c.backend.read(0, 512)).rejects.toThrow(/closed/);
  });

  it("nbdkit frozen (SIGSTOP) mid-run: the request times out instead of hanging, and once nbdkit is restarted the write lands and everything reads back", async () => {
    const file = join(dir, "real.img");
    writeFileSync(file, pattern());
    const socket = join(dir, "real.sock");
    const start = async (): Promise<ChildProcess> => {
      rmSync(socket, { force: true });
      const child = spawn("nbdkit", ["--foreground", "--exit-with-parent", "--unix", socket, "file", `file=${file}`], { stdio: "ignore" });
      cleanups.push(() => child.kill("SIGKILL"));
      await until(() => existsSync(socket), 10_000, "nbdkit's socket");
      return child;
    };
    let nbdkit = await start();
    const c = await client(`nbd+unix:///?socket=${socket}`);
    c.scheduler.submit([write(1, 3, 0xaa)], 0);
    await c.settled("the first write");
    nbdkit.kill("SIGSTOP");
    // every thread stopped (Linux): no request is served from now on
    const tasks = `/proc/${nbdkit.pid}/task`;
    const stopped = () => readdirSync(tasks).every((t) => readFileSync(join(tasks, t, "stat"), "utf8").replace(/^.*\) /s, "").startsWith("T"));
    await until(stopped, 10_000, "nbdkit to stop");
    c.scheduler.submit([write(2, 4, 0xbb), read(3, 3)], 1);
    await until(() => c.logged(/^NBD server did not answer within 400ms: reconnecting$/).length === 1, 10_000, () => `the timeout's log line; outstanding ${c.scheduler.outstanding}; log ${JSON.stringify(c.lines)}`);
    expect(c.scheduler.outstanding).toBe(2);
    nbdkit.kill("SIGKILL");
    nbdkit = await start();
    await c.settled("the requests after the restart");
    expect(c.reads.get(3)).toEqual(Buffer.alloc(512, 0xaa));
    expect(c.writes.has(2)).toBe(true);
    expect(c.backend.inFlight).toBe(0);
    expect(c.logged(/^NBD reconnected after \d+ attempts?$/)).toHaveLength(1);
    await c.backend.close();
    const disk = readFileSync(file);
    expect(sectorOf(disk, 3)).toEqual(Buffer.alloc(512, 0xaa));
    expect(sectorOf(disk, 4)).toEqual(Buffer.alloc(512, 0xbb));
    expect(sectorOf(disk, 5)).toEqual(sectorOf(pattern(), 5));
  });
});
