/**
 * An NBD client backend (the newstyle fixed handshake, NBD_OPT_GO, simple replies; protocol as in
 * the NBD project's doc/proto.md) for hosts that share no filesystem: both hosts reach the same
 * export, e.g. `nbdkit file disk.img`. Requests are pipelined and matched to replies by cookie.
 *
 * URLs: nbd://host[:port][/export] (port 10809 by default), nbd+unix:///[export]?socket=PATH.
 *
 * Faults. No wait is unbounded: a connection attempt (connect and handshake) gives up after
 * `connectTimeoutMs` (5 s) and a request after `requestTimeoutMs` (10 s) without its whole reply.
 * A request that times out, and a connection that drops (even in the middle of a reply header or of
 * a read's data), fail every request in flight on that connection at once, and its socket is
 * destroyed: nothing it carries is read again, and cookies are numbered per backend, never per
 * connection, so a late reply can never complete a newer request. The DiskScheduler retries the
 * failed requests (the guest is paused meanwhile), so nothing is lost when the server comes back.
 *
 * Reconnecting starts at once after a loss, and again with the next request after a failed
 * attempt once a backoff has passed (`reconnectMinMs` 100 ms, doubled per failed attempt up to
 * `reconnectMaxMs` 5 s); until then requests fail at once, so a dead server is not hammered and
 * nothing waits on it. Losses, timeouts and failed attempts are logged at warn, a reconnect at
 * info (URL, attempt count, error), each kind at most once per `logEveryMs` (30 s), the next line
 * counting those left out, so a dead or flapping server does not flood the log.
 *
 * Not covered: a write that timed out may still be carried out later by a server that was only
 * slow, after its retry and even after a later write to the same sectors; the protocol gives a
 * client no way to fence off a request it has given up on.
 *
 * Over 400 lines on purpose: the byte reader, one connection (handshake, cookies, timeouts) and
 * the reconnecting backend are one protocol client, each piece meaningless without the others.
 */
import { connect, type Socket } from "node:net";
import type { Logger } from "pino";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { WriteNotStarted, type DiskBackend } from "./disk-backend.js";

const NBDMAGIC = 0x4e42444d41474943n; // "NBDMAGIC"
const IHAVEOPT = 0x49484156454f5054n; // "IHAVEOPT"
const OPT_REPLY_MAGIC = 0x3e889045565a9n;
const REQUEST_MAGIC = 0x25609513;
const SIMPLE_REPLY_MAGIC = 0x67446698;
const FLAG_FIXED_NEWSTYLE = 1;
const FLAG_NO_ZEROES = 2;
const OPT_GO = 7;
const REP_ACK = 1;
const REP_INFO = 3;
const INFO_EXPORT = 0;
const FLAG_READ_ONLY = 2;
const CMD_READ = 0;
const CMD_WRITE = 1;
const CMD_DISC = 2;

/** Reads exact byte counts from a socket, in order. */
class ByteReader {
  private chunks: Buffer[] = [];
  private have = 0;
  private waiter: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined;
  private error: Error | undefined;

  constructor(socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.chunks.push(d);
      this.have += d.length;
      this.serve();
    });
    const fail = (e: Error) => {
      this.error ??= e;
      const w = this.waiter;
      this.waiter = undefined;
      w?.reject(this.error);
    };
    socket.on("error", fail);
    socket.on("close", () => fail(new Error("connection closed")));
  }

  read(n: number): Promise<Buffer> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.waiter = { n, resolve, reject };
      this.serve();
    });
  }

  private serve(): void {
    const w = this.waiter;
    if (!w || this.have < w.n) return;
    const all = Buffer.concat(this.chunks);
    this.chunks = [all.subarray(w.n)];
    this.have -= w.n;
    this.waiter = undefined;
    w.resolve(all.subarray(0, w.n));
  }
}

interface Target {
  host?: string;
  port?: number;
  socketPath?: string;
  exportName: string;
}

export function parseNbdUrl(url: string): Target {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new LockstepError(ErrorCode.usage, `${JSON.stringify(url)} is not an NBD URL`, "nbd://host:port/export or nbd+unix:///export?socket=PATH");
  }
  const exportName = decodeURIComponent(u.pathname.replace(/^\//, ""));
  if (u.protocol === "nbd+unix:") {
    const socketPath = u.searchParams.get("socket");
    if (!socketPath) throw new LockstepError(ErrorCode.usage, `${url} names no socket`, "nbd+unix:///export?socket=PATH");
    return { socketPath, exportName };
  }
  if (u.protocol !== "nbd:") throw new LockstepError(ErrorCode.usage, `${url} is not an NBD URL`);
  return { host: u.hostname || "127.0.0.1", port: u.port ? Number(u.port) : 10809, exportName };
}

export interface NbdOptions {
  /** Where losses, timeouts and reconnects are logged (each line carries the URL as `url`). */
  logger: Logger;
  /** One connection attempt, connect and handshake (ms; default 5000). */
  connectTimeoutMs?: number;
  /** One request, from being sent until its whole reply is in (ms; default 10000). */
  requestTimeoutMs?: number;
  /** Wait after the first failed reconnect attempt, doubled per failed attempt up to `reconnectMaxMs` (ms; defaults 100 and 5000). */
  reconnectMinMs?: number;
  reconnectMaxMs?: number;
  /** Each kind of fault line at most once per this many ms (default 30000). */
  logEveryMs?: number;
}

/**
 * Defaults: a handshake takes a few round trips, so 5 s is a server that is not there; a request
 * moves at most a few hundred KiB, so 10 s is far beyond any healthy server (even a busy one on a
 * slow link) yet short enough that a paused guest is noticed and resumed soon after a restart.
 */
export const nbdDefaults = { connectTimeoutMs: 5000, requestTimeoutMs: 10_000, reconnectMinMs: 100, reconnectMaxMs: 5000, logEveryMs: 30_000 };

const nowMs = () => performance.now();

/** A socket error's code (ECONNREFUSED, ENOENT, ...) or the message. */
const describe = (e: unknown) => (e as NodeJS.ErrnoException).code ?? (e as Error).message;

/** Why a connection broke: a request not answered in time, or the connection lost. */
interface Break {
  kind: "timeout" | "lost";
  error: LockstepError;
  inFlight: number;
}

interface Pending {
  /** Bytes of data in a successful reply (a read's length; 0 for a write). */
  length: number;
  resolve: (data: Uint8Array) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

class NbdConnection {
  private readonly pending = new Map<bigint, Pending>();
  private broke: Error | undefined;
  /** Called once when the connection breaks by itself (not when closed). */
  onBreak: ((b: Break) => void) | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    readonly bytes: number,
    readonly readOnly: boolean,
    private readonly requestTimeoutMs: number,
  ) {
    void this.replies();
  }

  /** Connects and negotiates the export; gives up after `timeoutMs`, or when `signal` aborts. */
  static async open(target: Target, timeoutMs: number, requestTimeoutMs: number, signal?: AbortSignal): Promise<NbdConnection> {
    const socket = target.socketPath ? connect(target.socketPath) : connect(target.port!, target.host);
    socket.setNoDelay(true);
    const reader = new ByteReader(socket);
    // destroying the socket with an error fails whatever the handshake waits for (connect or bytes)
    const timer = setTimeout(() => socket.destroy(new Error(`no handshake within ${timeoutMs} ms`)), timeoutMs);
    const abort = () => socket.destroy(new Error("the disk was closed"));
    signal?.addEventListener("abort", abort);
    try {
      await new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      });
      const hello = await reader.read(18);
      if (hello.readBigUInt64BE(0) !== NBDMAGIC || hello.readBigUInt64BE(8) !== IHAVEOPT) throw new Error("not an NBD newstyle server");
      const serverFlags = hello.readUInt16BE(16);
      if (!(serverFlags & FLAG_FIXED_NEWSTYLE)) throw new Error("the server does not speak fixed newstyle");
      const clientFlags = Buffer.alloc(4);
      clientFlags.writeUInt32BE(FLAG_FIXED_NEWSTYLE | (serverFlags & FLAG_NO_ZEROES));
      socket.write(clientFlags);
      // NBD_OPT_GO: export name, no information requests
      const name = Buffer.from(target.exportName, "utf8");
      const opt = Buffer.alloc(16 + 4 + name.length + 2);
      opt.writeBigUInt64BE(IHAVEOPT, 0);
      opt.writeUInt32BE(OPT_GO, 8);
      opt.writeUInt32BE(4 + name.length + 2, 12);
      opt.writeUInt32BE(name.length, 16);
      name.copy(opt, 20);
      opt.writeUInt16BE(0, 20 + name.length);
      socket.write(opt);
      let bytes: number | undefined;
      let transmissionFlags = 0;
      for (;;) {
        const head = await reader.read(20);
        if (head.readBigUInt64BE(0) !== OPT_REPLY_MAGIC) throw new Error("bad option reply magic");
        const type = head.readUInt32BE(12);
        const length = head.readUInt32BE(16);
        const body = length > 0 ? await reader.read(length) : Buffer.alloc(0);
        if (type === REP_ACK) break;
        if (type === REP_INFO) {
          if (body.readUInt16BE(0) === INFO_EXPORT) {
            bytes = Number(body.readBigUInt64BE(2));
            transmissionFlags = body.readUInt16BE(10);
          }
          continue;
        }
        if (type & 0x80000000) throw new Error(`the server refused export ${JSON.stringify(target.exportName)} (error ${type & 0x7fffffff}${body.length ? `: ${body.toString("utf8")}` : ""})`);
      }
      if (bytes === undefined) throw new Error("the server sent no export size");
      return new NbdConnection(socket, reader, bytes, (transmissionFlags & FLAG_READ_ONLY) !== 0, requestTimeoutMs);
    } catch (e) {
      socket.destroy();
      throw e;
    } finally {
      clearTimeout(timer);
      signal?.removeEventListener("abort", abort);
    }
  }

  get broken(): boolean {
    return this.broke !== undefined;
  }

  /** Sends a request under `cookie` (unique over the backend's life); settles by its reply, its timeout, or the connection's end. */
  request(cmd: number, offset: number, length: number, cookie: bigint, data?: Uint8Array): Promise<Uint8Array> {
    if (this.broke) return Promise.reject(this.broke);
    const head = Buffer.alloc(28);
    head.writeUInt32BE(REQUEST_MAGIC, 0);
    head.writeUInt16BE(0, 4); // flags
    head.writeUInt16BE(cmd, 6);
    head.writeBigUInt64BE(cookie, 8);
    head.writeBigUInt64BE(BigInt(offset), 16);
    head.writeUInt32BE(length, 24);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.break("timeout", new LockstepError(ErrorCode.diskBackend, `the NBD server did not answer within ${this.requestTimeoutMs} ms`)), this.requestTimeoutMs);
      timer.unref();
      this.pending.set(cookie, { length: cmd === CMD_READ ? length : 0, resolve, reject, timer });
      this.socket.write(data ? Buffer.concat([head, data]) : head);
    });
  }

  private async replies(): Promise<void> {
    try {
      for (;;) {
        const head = await this.reader.read(16);
        if (head.readUInt32BE(0) !== SIMPLE_REPLY_MAGIC) throw new Error("bad reply magic");
        const error = head.readUInt32BE(4);
        const cookie = head.readBigUInt64BE(8);
        const p = this.pending.get(cookie);
        if (!p) throw new Error(`reply to an unknown request ${cookie}`);
        // with simple replies, a read's data follows only on success; the request stays pending
        // (and its timeout armed) until all of it is in, so a connection that drops in the middle
        // of it fails it with the others
        const data = error === 0 && p.length > 0 ? new Uint8Array(await this.reader.read(p.length)) : new Uint8Array(0);
        if (this.broke) return;
        this.pending.delete(cookie);
        clearTimeout(p.timer);
        if (error !== 0) p.reject(new LockstepError(ErrorCode.diskBackend, `the NBD server answered error ${error}`));
        else p.resolve(data);
      }
    } catch (e) {
      this.break("lost", new LockstepError(ErrorCode.diskBackend, `the NBD connection was lost: ${describe(e)}`));
    }
  }

  /** Fails every request in flight with `error` and destroys the socket: nothing it carries is read again. */
  private break(kind: Break["kind"], error: LockstepError): void {
    if (this.broke) return;
    this.broke = error;
    this.socket.destroy();
    const inFlight = this.pending.size;
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(error);
    }
    this.pending.clear();
    this.onBreak?.({ kind, error, inFlight });
  }

  /**
   * Fails the requests in flight, says goodbye (NBD_CMD_DISC) if the connection still works, and
   * resolves once the socket is closed: by the server, or destroyed after `graceMs`.
   */
  close(graceMs: number): Promise<void> {
    if (!this.broke) {
      this.broke = new LockstepError(ErrorCode.diskBackend, "the NBD disk was closed");
      for (const p of this.pending.values()) {
        clearTimeout(p.timer);
        p.reject(this.broke);
      }
      this.pending.clear();
      const head = Buffer.alloc(28);
      head.writeUInt32BE(REQUEST_MAGIC, 0);
      head.writeUInt16BE(CMD_DISC, 6);
      this.socket.end(head);
    }
    if (this.socket.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.socket.destroy(), graceMs);
      this.socket.once("close", () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** Logs each kind of line at most once per `everyMs`; the next one counts those left out (`suppressed`). */
class ThrottledLog {
  private readonly last = new Map<string, { atMs: number; suppressed: number }>();

  constructor(
    private readonly log: Logger,
    private readonly everyMs: number,
  ) {}

  line(level: "warn" | "info", kind: string, fields: Record<string, unknown>, msg: string): void {
    const last = this.last.get(kind);
    const now = nowMs();
    if (last && now - last.atMs < this.everyMs) {
      last.suppressed++;
      return;
    }
    this.log[level]({ ...fields, ...(last?.suppressed ? { suppressed: last.suppressed } : {}) }, msg);
    this.last.set(kind, { atMs: now, suppressed: 0 });
  }
}

/** From a lost connection until a reconnect succeeds. */
interface Outage {
  sinceMs: number;
  attempts: number;
  lastError: string;
  /** No attempt before this (backoff after a failed one). */
  nextAttemptAtMs: number;
}

export class NbdDiskBackend implements DiskBackend {
  private conn: NbdConnection;
  private connecting: Promise<NbdConnection> | undefined;
  /** Aborts the connection attempt under way (close). */
  private attempt: AbortController | undefined;
  /** Cookies never repeat over the backend's life, whatever connection a request goes on. */
  private nextCookie = 1n;
  private outage: Outage | undefined;
  private closed = false;
  private active = 0;
  private readonly log: ThrottledLog;

  private constructor(
    readonly description: string,
    private readonly target: Target,
    conn: NbdConnection,
    private readonly options: Required<Omit<NbdOptions, "logger">>,
    logger: Logger,
  ) {
    this.conn = conn;
    conn.onBreak = (b) => this.lost(b);
    this.log = new ThrottledLog(logger.child({ url: description }), options.logEveryMs);
  }

  get bytes(): number {
    return this.conn.bytes;
  }

  /** Reads and writes called and not settled yet (waiting for a connection or for their reply). */
  get inFlight(): number {
    return this.active;
  }

  /** Reconnect attempts made since the connection was lost (0 while connected). */
  get reconnectAttempts(): number {
    return this.outage?.attempts ?? 0;
  }

  static async connect(url: string, options: NbdOptions): Promise<NbdDiskBackend> {
    const target = parseNbdUrl(url);
    const o = {
      connectTimeoutMs: options.connectTimeoutMs ?? nbdDefaults.connectTimeoutMs,
      requestTimeoutMs: options.requestTimeoutMs ?? nbdDefaults.requestTimeoutMs,
      reconnectMinMs: options.reconnectMinMs ?? nbdDefaults.reconnectMinMs,
      reconnectMaxMs: options.reconnectMaxMs ?? nbdDefaults.reconnectMaxMs,
      logEveryMs: options.logEveryMs ?? nbdDefaults.logEveryMs,
    };
    let conn: NbdConnection;
    try {
      conn = await NbdConnection.open(target, o.connectTimeoutMs, o.requestTimeoutMs);
    } catch (e) {
      throw new LockstepError(ErrorCode.diskUnreadable, `NBD disk ${url} cannot be opened: ${describe(e)}`);
    }
    if (conn.readOnly) {
      await conn.close(0);
      throw new LockstepError(ErrorCode.diskUnwritable, `NBD disk ${url} is read-only`, "the guest's writes must reach the shared disk: export it writable");
    }
    if (conn.bytes % 512 !== 0 || conn.bytes === 0) {
      await conn.close(0);
      throw new LockstepError(ErrorCode.diskUnreadable, `NBD disk ${url} has ${conn.bytes} bytes, not a whole number of 512-byte sectors`);
    }
    return new NbdDiskBackend(url, target, conn, o, options.logger);
  }

  /** The connection broke by itself: its requests failed (the scheduler retries them); reconnect at once. */
  private lost(b: Break): void {
    this.outage ??= { sinceMs: nowMs(), attempts: 0, lastError: b.error.message, nextAttemptAtMs: 0 };
    if (b.kind === "timeout") {
      this.log.line("warn", "timeout", { inFlight: b.inFlight, timeoutMs: this.options.requestTimeoutMs }, `NBD server did not answer within ${this.options.requestTimeoutMs}ms: reconnecting`);
    } else {
      this.log.line("warn", "lost", { inFlight: b.inFlight, error: b.error.message }, `NBD connection lost: ${b.inFlight} requests in flight will be retried`);
    }
    if (!this.closed) this.connection().catch(() => {}); // a failure is logged; requests retry
  }

  /** The connection; after a loss, one reconnect attempt shared by every request that asks meanwhile. */
  private connection(): Promise<NbdConnection> {
    if (this.closed) return Promise.reject(new LockstepError(ErrorCode.diskBackend, "the NBD disk was closed"));
    if (!this.conn.broken) return Promise.resolve(this.conn);
    this.connecting ??= this.reconnect().finally(() => (this.connecting = undefined));
    return this.connecting;
  }

  private async reconnect(): Promise<NbdConnection> {
    const o = (this.outage ??= { sinceMs: nowMs(), attempts: 0, lastError: "the connection was lost", nextAttemptAtMs: 0 });
    const waitMs = o.nextAttemptAtMs - nowMs();
    if (waitMs > 0) throw new LockstepError(ErrorCode.diskBackend, `the NBD server is not connected (${o.lastError}); next reconnect attempt in ${Math.ceil(waitMs)} ms`);
    o.attempts++;
    const attempt = (this.attempt = new AbortController());
    let conn: NbdConnection;
    try {
      conn = await NbdConnection.open(this.target, this.options.connectTimeoutMs, this.options.requestTimeoutMs, attempt.signal);
      const wrong = conn.bytes !== this.conn.bytes ? `the export now has ${conn.bytes} bytes, not ${this.conn.bytes}` : conn.readOnly ? "the export is now read-only" : undefined;
      if (wrong) {
        void conn.close(0);
        throw new Error(wrong);
      }
    } catch (e) {
      if (this.closed) throw new LockstepError(ErrorCode.diskBackend, "the NBD disk was closed");
      o.lastError = describe(e);
      const backoffMs = Math.min(this.options.reconnectMaxMs, this.options.reconnectMinMs * 2 ** (o.attempts - 1));
      o.nextAttemptAtMs = nowMs() + backoffMs;
      this.log.line("warn", "reconnect-failed", { attempt: o.attempts, error: o.lastError, nextAttemptInMs: backoffMs }, `NBD reconnect attempt ${o.attempts} failed: ${o.lastError}`);
      throw new LockstepError(ErrorCode.diskBackend, `NBD reconnect attempt ${o.attempts} failed: ${o.lastError}`);
    } finally {
      this.attempt = undefined;
    }
    if (this.closed) {
      void conn.close(0);
      throw new LockstepError(ErrorCode.diskBackend, "the NBD disk was closed");
    }
    conn.onBreak = (b) => this.lost(b);
    this.conn = conn;
    this.outage = undefined;
    this.log.line("info", "reconnected", { attempts: o.attempts, downMs: Math.round(nowMs() - o.sinceMs) }, `NBD reconnected after ${o.attempts} attempt${o.attempts === 1 ? "" : "s"}`);
    return conn;
  }

  private async request(cmd: number, offset: number, length: number, data?: Uint8Array, mayStart?: () => boolean): Promise<Uint8Array> {
    this.active++;
    try {
      const conn = await this.connection();
      // the lease, asked again right before the request goes into the socket (a reconnect may have taken long)
      if (mayStart && !mayStart()) throw new WriteNotStarted();
      return await conn.request(cmd, offset, length, this.nextCookie++, data);
    } finally {
      this.active--;
    }
  }

  read(offset: number, length: number): Promise<Uint8Array> {
    return this.request(CMD_READ, offset, length);
  }

  async write(offset: number, data: Uint8Array, mayStart?: () => boolean): Promise<void> {
    await this.request(CMD_WRITE, offset, data.length, data, mayStart);
  }

  /** Fails what is in flight and closes; resolves within a second even when the server hangs. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.attempt?.abort();
    await this.conn.close(Math.min(1000, this.options.requestTimeoutMs));
  }
}
