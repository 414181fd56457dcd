/**
 * An NBD client backend (the newstyle fixed handshake, NBD_OPT_GO, simple replies; protocol as in
 * the NBD project's doc/proto.md) for hosts that share no filesystem: both hosts reach the same
 * export, e.g. `nbdkit file disk.img`. Requests are pipelined and matched to replies by cookie.
 *
 * URLs: nbd://host[:port][/export] (port 10809 by default), nbd+unix:///[export]?socket=PATH.
 *
 * A lost connection fails every request in flight and later ones until a reconnect succeeds; the
 * DiskScheduler retries them (the guest is paused meanwhile), so nothing is lost when the server
 * comes back.
 */
import { connect, type Socket } from "node:net";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { DiskBackend } from "./disk-backend.js";

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

interface Pending {
  length: number;
  resolve: (data: Uint8Array) => void;
  reject: (e: Error) => void;
}

class NbdConnection {
  private nextCookie = 1n;
  private readonly pending = new Map<bigint, Pending>();
  private closed: Error | undefined;

  private constructor(
    private readonly socket: Socket,
    private readonly reader: ByteReader,
    readonly bytes: number,
    readonly readOnly: boolean,
  ) {
    void this.replies();
  }

  static async open(target: Target): Promise<NbdConnection> {
    const socket = target.socketPath ? connect(target.socketPath) : connect(target.port!, target.host);
    socket.setNoDelay(true);
    const reader = new ByteReader(socket);
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
      return new NbdConnection(socket, reader, bytes, (transmissionFlags & FLAG_READ_ONLY) !== 0);
    } catch (e) {
      socket.destroy();
      throw e;
    }
  }

  get broken(): boolean {
    return this.closed !== undefined;
  }

  request(cmd: number, offset: number, length: number, data?: Uint8Array): Promise<Uint8Array> {
    if (this.closed) return Promise.reject(this.closed);
    const cookie = this.nextCookie++;
    const head = Buffer.alloc(28);
    head.writeUInt32BE(REQUEST_MAGIC, 0);
    head.writeUInt16BE(0, 4); // flags
    head.writeUInt16BE(cmd, 6);
    head.writeBigUInt64BE(cookie, 8);
    head.writeBigUInt64BE(BigInt(offset), 16);
    head.writeUInt32BE(length, 24);
    return new Promise((resolve, reject) => {
      this.pending.set(cookie, { length: cmd === CMD_READ ? length : 0, resolve, reject });
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
        this.pending.delete(cookie);
        // with simple replies, a read's data follows only on success
        const data = error === 0 && p.length > 0 ? new Uint8Array(await this.reader.read(p.length)) : new Uint8Array(0);
        if (error !== 0) p.reject(new Error(`NBD error ${error}`));
        else p.resolve(data);
      }
    } catch (e) {
      this.closed = e as Error;
      for (const p of this.pending.values()) p.reject(this.closed);
      this.pending.clear();
      this.socket.destroy();
    }
  }

  close(): void {
    if (this.closed) return;
    const head = Buffer.alloc(28);
    head.writeUInt32BE(REQUEST_MAGIC, 0);
    head.writeUInt16BE(CMD_DISC, 6);
    this.socket.end(head);
    this.closed = new Error("closed");
  }
}

export class NbdDiskBackend implements DiskBackend {
  private connecting: Promise<NbdConnection> | undefined;

  private constructor(
    readonly description: string,
    private readonly target: Target,
    private conn: NbdConnection,
  ) {}

  get bytes(): number {
    return this.conn.bytes;
  }

  static async connect(url: string): Promise<NbdDiskBackend> {
    const target = parseNbdUrl(url);
    let conn: NbdConnection;
    try {
      conn = await NbdConnection.open(target);
    } catch (e) {
      throw new LockstepError(ErrorCode.diskUnreadable, `NBD disk ${url} cannot be opened: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (conn.readOnly) {
      conn.close();
      throw new LockstepError(ErrorCode.diskUnwritable, `NBD disk ${url} is read-only`, "the guest's writes must reach the shared disk: export it writable");
    }
    if (conn.bytes % 512 !== 0 || conn.bytes === 0) {
      conn.close();
      throw new LockstepError(ErrorCode.diskUnreadable, `NBD disk ${url} has ${conn.bytes} bytes, not a whole number of 512-byte sectors`);
    }
    return new NbdDiskBackend(url, target, conn);
  }

  /** The connection, reconnecting if it broke (one attempt per call: the scheduler retries). */
  private async connection(): Promise<NbdConnection> {
    if (!this.conn.broken) return this.conn;
    this.connecting ??= NbdConnection.open(this.target).finally(() => (this.connecting = undefined));
    const conn = await this.connecting;
    if (conn.bytes !== this.conn.bytes) throw new Error(`the export now has ${conn.bytes} bytes, not ${this.conn.bytes}`);
    this.conn = conn;
    return conn;
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    return (await this.connection()).request(CMD_READ, offset, length);
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    await (await this.connection()).request(CMD_WRITE, offset, data.length, data);
  }

  async close(): Promise<void> {
    this.conn.close();
  }
}
