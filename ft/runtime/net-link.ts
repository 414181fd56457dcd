/**
 * NetLink: the host side of the guest's network card, built from existing tools (no TCP/IP stack of
 * our own). Frames the runtime releases go out through it; frames from the host come back through
 * `onFrames`. Three kinds, chosen by `--net`:
 *
 *   user[:HOST=GUEST,...]  passt (user-mode networking, no root) on a UNIX socket speaking qemu's
 *                          stream protocol: a 4-byte big-endian length, then the frame. `HOST=GUEST`
 *                          forwards a TCP port of the host's loopback to the guest. In a pair the
 *                          socket lives in the shared directory and passt outlives the primary: the
 *                          new primary attaches to the same passt, which keeps the flows.
 *   passt:PATH             a passt the user started (`passt -s PATH ...`): attach to it only.
 *   tap:NAME               a TAP device (made by the user and put on a bridge), through
 *                          `socat TUN,tun-type=tap <-> UDP` on loopback: one frame per datagram.
 *
 * A link that fails (passt gone, socat exits, the TAP down) is logged once per outage and retried
 * with backoff; while it is down, frames are dropped as a NIC with no carrier drops them, and the
 * guest never waits for it. Frames from the host larger than the MTU allows are dropped and
 * counted (a NIC with a 1500-byte MTU takes at most 1518-byte frames).
 */
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { createHash } from "node:crypto";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { Logger } from "pino";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { frameBytesMax, frameBytesMin } from "../../hypervisor/event-log/net-frame.js";
import { freePort } from "./free-port.js";

export type NetSpec =
  | { mode: "none" }
  | { mode: "user"; forwards: Array<{ host: number; guest: number }> }
  | { mode: "passt"; path: string }
  | { mode: "tap"; name: string };

/** The guest's address in user mode (passt maps the host's own addresses to it). */
export const userModeGuest = { address: "10.0.2.15", prefix: 24, gateway: "10.0.2.2" };

const netHint = "use --net none, --net user[:HOSTPORT=GUESTPORT,...], --net passt:SOCKET or --net tap:NAME";

/** Parses a `--net` value; a clear LOCKSTEP_ERR_NET_MODE error otherwise. */
export function parseNetSpec(text: string): NetSpec {
  const colon = text.indexOf(":");
  const mode = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  const bad = (why: string): never => {
    throw new LockstepError(ErrorCode.netMode, `--net ${JSON.stringify(text)}: ${why}`, netHint);
  };
  switch (mode) {
    case "none":
      if (rest) bad("none takes no options");
      return { mode: "none" };
    case "user": {
      const forwards: Array<{ host: number; guest: number }> = [];
      for (const part of rest ? rest.split(",") : []) {
        const m = /^(\d+)=(\d+)$/.exec(part);
        const host = m ? Number(m[1]) : NaN;
        const guest = m ? Number(m[2]) : NaN;
        if (!(host >= 1 && host <= 65535 && guest >= 1 && guest <= 65535)) bad(`${JSON.stringify(part)} is not HOSTPORT=GUESTPORT (ports 1 to 65535)`);
        if (forwards.some((f) => f.host === host)) bad(`host port ${host} is forwarded twice`);
        forwards.push({ host, guest });
      }
      return { mode: "user", forwards };
    }
    case "passt":
      if (!rest) bad("passt needs the path of its socket (passt:/path/to/passt.sock)");
      return { mode: "passt", path: rest };
    case "tap":
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(rest)) bad("tap needs a device name of 1 to 15 letters, digits, '-', '_' or '.'");
      return { mode: "tap", name: rest };
    default:
      return bad(`unknown mode ${JSON.stringify(mode)}`);
  }
}

export function describeNetSpec(spec: NetSpec): string {
  switch (spec.mode) {
    case "none":
      return "none";
    case "user":
      return `user${spec.forwards.length ? ":" + spec.forwards.map((f) => `${f.host}=${f.guest}`).join(",") : ""}`;
    case "passt":
      return `passt:${spec.path}`;
    case "tap":
      return `tap:${spec.name}`;
  }
}

/**
 * Where a pair's passt keeps its socket and pid file: named after the shared directory, so that the
 * next primary on this host finds it, but under the system's temporary directory, because passt
 * started by root runs as nobody, who may not reach into the shared directory.
 */
export function passtDirFor(sharedDir: string): string {
  const id = createHash("sha256").update(resolve(sharedDir)).digest("hex").slice(0, 16);
  return join(tmpdir(), `lockstep-passt-${id}`);
}

/** Stops the passt a pair left for its shared directory (it outlives the nodes), if any. */
export function stopPairPasst(sharedDir: string): void {
  const dir = passtDirFor(sharedDir);
  const pid = readPid(join(dir, "passt.pid"));
  if (pid) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone already
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

export interface NetCounters {
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
  /** Frames for the host dropped while the link was down. */
  droppedDown: number;
  /** Frames from the host dropped as larger than the MTU allows (or shorter than a header). */
  droppedSize: number;
  /** Times the link came up again after it failed. */
  reconnects: number;
}

export interface NetLinkOptions {
  logger: Logger;
  /** Frames from the host, in arrival order. */
  onFrames: (frames: Uint8Array[]) => void;
  /**
   * user mode, a pair: the shared directory, which names where passt's socket and pid file live
   * (passtDirFor); passt then outlives this process. Default: a fresh directory, and passt stops with the link.
   */
  stateDir?: string;
  /** user mode: stop passt when the link closes (default: when no stateDir was given). */
  ownsPasst?: boolean;
}

const backoffMinMs = 100;
const backoffMaxMs = 2000;
/** A link up this long is back (see wentUp). */
const stableMs = 1000;

/** The child has not exited (a child killed by a signal keeps a null exit code). */
const running = (child: ChildProcess | undefined): child is ChildProcess => child !== undefined && child.exitCode === null && child.signalCode === null;

export abstract class NetLink {
  readonly counters: NetCounters = { framesIn: 0, bytesIn: 0, framesOut: 0, bytesOut: 0, droppedDown: 0, droppedSize: 0, reconnects: 0 };
  up = false;
  protected closed = false;
  readonly log: Logger;
  private backoffMs = backoffMinMs;
  private retry: NodeJS.Timeout | undefined;
  private everUp = false;
  private downSince: number | undefined;
  private primed: Uint8Array[] = [];
  private closing: Promise<void> | undefined;
  /** The link has stayed up for `stableMs` since it last came up. */
  private stable = false;
  private stableTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly spec: NetSpec,
    protected readonly options: NetLinkOptions,
  ) {
    this.log = options.logger.child({ component: "net", net: describeNetSpec(spec) });
  }

  /** Sends frames to the host; dropped (counted) while the link is down. */
  send(frames: Uint8Array[]): void {
    if (frames.length === 0) return;
    if (!this.up || this.closed) {
      this.counters.droppedDown += frames.length;
      return;
    }
    for (const f of frames) {
      this.counters.framesOut++;
      this.counters.bytesOut += f.length;
    }
    this.write(frames);
  }

  /** Frames to send as soon as the link is up (now, if it is): a new primary's first words. */
  sendWhenUp(frames: Uint8Array[]): void {
    if (this.up) this.send(frames);
    else this.primed = frames;
  }

  /** Starts the link (it comes up in the background and retries by itself). */
  start(): void {
    this.attempt();
  }

  /** Stops the link and what it started; a second call waits for the first. */
  close(): Promise<void> {
    return (this.closing ??= (async () => {
      this.closed = true;
      clearTimeout(this.retry);
      clearTimeout(this.stableTimer);
      this.up = false;
      await this.stop();
    })());
  }

  status(): Record<string, unknown> {
    return { mode: describeNetSpec(this.spec), up: this.up, ...this.counters };
  }

  protected abstract connectOnce(): Promise<void>;
  protected abstract write(frames: Uint8Array[]): void;
  protected abstract stop(): Promise<void>;

  /** A frame from the host (checked against the MTU). */
  protected received(frames: Uint8Array[]): void {
    const ok: Uint8Array[] = [];
    for (const f of frames) {
      if (f.length < frameBytesMin || f.length > frameBytesMax) {
        if (this.counters.droppedSize++ === 0) {
          this.log.warn({ code: ErrorCode.netFrame, bytes: f.length }, `a frame from the host of ${f.length} bytes dropped: frames are ${frameBytesMin} to ${frameBytesMax} bytes (MTU 1500); further ones are only counted`);
        }
        continue;
      }
      this.counters.framesIn++;
      this.counters.bytesIn += f.length;
      ok.push(f);
    }
    if (ok.length > 0) this.options.onFrames(ok);
  }

  /**
   * Connected. It counts as back (outage over, backoff reset, a reconnect counted) only once it has
   * stayed up for `stableMs`: passt accepts a second client and closes it at once (another client
   * holds it), and a link that flaps so must neither log twice per attempt nor retry every 100 ms.
   */
  protected wentUp(): void {
    if (this.closed) return;
    this.up = true;
    if (!this.everUp) this.log.info({}, "network link up");
    this.everUp = true;
    clearTimeout(this.stableTimer);
    this.stableTimer = setTimeout(() => {
      if (!this.up || this.closed) return;
      this.stable = true;
      this.backoffMs = backoffMinMs;
      if (this.downSince !== undefined) {
        this.counters.reconnects++;
        this.log.warn({ downMs: Math.round(performance.now() - this.downSince) }, "network link up again");
        this.downSince = undefined;
      }
    }, stableMs);
    const primed = this.primed;
    this.primed = [];
    this.send(primed);
  }

  /** The link failed: log it once per outage and try again later. */
  protected wentDown(reason: string): void {
    const wasStable = this.up && this.stable;
    this.up = false;
    this.stable = false;
    clearTimeout(this.stableTimer);
    if (this.closed) return;
    if (wasStable || this.downSince === undefined) {
      this.downSince = performance.now();
      this.log.warn({ reason, retryMs: this.backoffMs }, "network link down: frames are dropped until it is back; retrying");
    }
    clearTimeout(this.retry);
    this.retry = setTimeout(() => this.attempt(), this.backoffMs);
    this.backoffMs = Math.min(backoffMaxMs, this.backoffMs * 2);
  }

  private attempt(): void {
    if (this.closed) return;
    this.connectOnce().catch((e: Error) => this.wentDown(e.message));
  }
}

/** passt: qemu's stream protocol over a UNIX socket (a 4-byte big-endian length, then the frame). */
export class PasstLink extends NetLink {
  private socket: Socket | undefined;
  private passt: ChildProcess | undefined;
  private readonly dir: string;
  private readonly ownsPasst: boolean;
  private pending: Buffer = Buffer.alloc(0);

  constructor(spec: Extract<NetSpec, { mode: "user" | "passt" }>, options: NetLinkOptions) {
    super(spec, options);
    this.dir = spec.mode === "passt" ? "" : options.stateDir ? passtDirFor(options.stateDir) : join(tmpdir(), `lockstep-passt-${process.pid}-${Date.now()}`);
    this.ownsPasst = spec.mode === "user" && (options.ownsPasst ?? options.stateDir === undefined);
  }

  get socketPath(): string {
    return this.spec.mode === "passt" ? this.spec.path : join(this.dir, "passt.sock");
  }

  get pidFile(): string {
    return join(this.dir, "passt.pid");
  }

  get forwardsFile(): string {
    return join(this.dir, "passt.forwards");
  }

  protected async connectOnce(): Promise<void> {
    if (this.spec.mode === "user") this.replaceStalePasst();
    if (this.spec.mode === "user" && !(await this.tryConnect())) await this.startPasst();
    if (!this.socket && !(await this.tryConnect())) throw new Error(`cannot connect to passt at ${this.socketPath}`);
  }

  /**
   * A pair's passt outlives its nodes: one left by an earlier pair on the same shared directory with
   * other forwards is stopped, so that this one's --net is what the host gets.
   */
  private replaceStalePasst(): void {
    let forwards: string | undefined;
    try {
      forwards = readFileSync(this.forwardsFile, "utf8");
    } catch {
      return;
    }
    if (forwards === describeNetSpec(this.spec)) return;
    const pid = readPid(this.pidFile);
    if (pid) {
      try {
        process.kill(pid, "SIGTERM");
      } catch {
        // gone already
      }
    }
    rmSync(this.socketPath, { force: true });
    this.log.warn({ pid: pid ?? null, was: forwards }, "a passt with other forwards was left in this shared directory: stopped");
  }

  /** Connects to the socket if something listens there (passt takes one client at a time). */
  private tryConnect(): Promise<boolean> {
    if (!existsSync(this.socketPath)) return Promise.resolve(false);
    return new Promise((resolve) => {
      const s = connect(this.socketPath);
      s.once("error", () => resolve(false));
      s.once("connect", () => {
        s.removeAllListeners("error");
        if (this.closed) {
          s.destroy();
          return resolve(false);
        }
        this.socket = s;
        this.pending = Buffer.alloc(0);
        s.on("data", (d: Buffer) => this.data(d));
        s.on("error", () => {});
        s.once("close", () => {
          if (this.socket === s) this.socket = undefined;
          this.wentDown("passt closed the connection");
        });
        this.wentUp();
        resolve(true);
      });
    });
  }

  /** Starts passt on our socket, forwarding the host ports (on loopback) to the guest. */
  private async startPasst(): Promise<void> {
    if (this.spec.mode !== "user" || this.closed) return;
    mkdirSync(this.dir, { recursive: true });
    // started as root, passt binds its socket as nobody: the directory must let it (sticky, as /tmp)
    if (process.geteuid?.() === 0) chmodSync(this.dir, 0o1777);
    rmSync(this.socketPath, { force: true });
    const g = userModeGuest;
    // in the foreground (the pid is ours to write; run as root, passt drops to nobody, who could not write it)
    const args = ["-f", "-q", "-4", "-s", this.socketPath, "-a", g.address, "-n", String(g.prefix), "-g", g.gateway, "-m", "1500", "--no-dhcp", "--no-dhcpv6", "--no-ndp", "--no-ra"];
    if (this.spec.forwards.length === 0) args.push("-t", "none");
    for (const f of this.spec.forwards) args.push("-t", `127.0.0.1/${f.host}:${f.guest}`);
    args.push("-u", "none");
    // passt's own capture of what it exchanged with the guest, for debugging a flow
    if (process.env.LOCKSTEP_PASST_PCAP) args.push("-p", process.env.LOCKSTEP_PASST_PCAP);
    // a passt of this process alone ends with its one client (this process, even if it is killed)
    if (this.ownsPasst) args.push("--one-off");
    // its messages go to a file: a pipe to this process would break (SIGPIPE) when this process dies
    const logFile = join(this.dir, "passt.log");
    const fd = openSync(logFile, "w");
    const child = spawn("passt", args, { stdio: ["ignore", "ignore", fd], detached: !this.ownsPasst });
    closeSync(fd);
    const exited = new Promise<string>((resolve) => {
      child.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ENOENT" ? "passt is not installed (Debian package passt)" : e.message));
      child.once("exit", (code) => resolve(`passt exited (${code}): ${lastLines(logFile)}`));
    });
    if (!this.ownsPasst) child.unref();
    this.passt = child;
    if (child.pid) writeFileSync(this.pidFile, `${child.pid}\n`);
    writeFileSync(this.forwardsFile, describeNetSpec(this.spec));
    // passt creates its socket once it is ready
    for (let i = 0; i < 250 && !existsSync(this.socketPath); i++) {
      const why = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 20))]);
      if (why !== undefined) throw new LockstepError(ErrorCode.netMode, `cannot start passt: ${why}`, "install passt, or use --net tap:NAME or --net none");
      if (this.closed) break; // closed meanwhile: stop() stops it (this.passt)
    }
    if (this.closed) {
      if (running(child)) child.kill("SIGTERM");
      return;
    }
    if (!existsSync(this.socketPath)) {
      child.kill("SIGKILL");
      throw new LockstepError(ErrorCode.netMode, `passt did not make its socket ${this.socketPath} within 5 s: ${lastLines(logFile)}`);
    }
    this.log.info({ pid: child.pid, socket: this.socketPath, forwards: this.spec.forwards }, "passt started");
  }

  private data(d: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, d]) : d;
    const frames: Uint8Array[] = [];
    let at = 0;
    while (this.pending.length - at >= 4) {
      const n = this.pending.readUInt32BE(at);
      if (n > 65_536) {
        // not qemu's framing: start over on a new connection (the whole frames before it count)
        if (frames.length > 0) this.received(frames);
        this.socket?.destroy();
        this.log.warn({ length: n }, "passt sent a frame length no NIC takes: reconnecting");
        return;
      }
      if (this.pending.length - at - 4 < n) break;
      frames.push(new Uint8Array(this.pending.subarray(at + 4, at + 4 + n)));
      at += 4 + n;
    }
    this.pending = this.pending.subarray(at);
    if (frames.length > 0) this.received(frames);
  }

  protected write(frames: Uint8Array[]): void {
    const s = this.socket;
    if (!s) return;
    // one write for all of them: passt (2023) drops a frame whose length and bytes arrive apart
    const trimmed = frames.map(withoutPadding);
    const out = Buffer.allocUnsafe(trimmed.reduce((n, f) => n + 4 + f.length, 0));
    let at = 0;
    for (const f of trimmed) {
      out.writeUInt32BE(f.length, at);
      out.set(f, at + 4);
      at += 4 + f.length;
    }
    s.write(out);
  }

  protected async stop(): Promise<void> {
    this.socket?.destroy();
    this.socket = undefined;
    if (this.ownsPasst) {
      const child = this.passt;
      if (running(child)) {
        const exited = new Promise((r) => child.once("exit", r));
        child.kill("SIGTERM");
        await exited;
      }
      if (this.spec.mode === "user" && this.options.stateDir === undefined) rmSync(this.dir, { recursive: true, force: true });
    }
  }
}

/** The last lines of a tool's log that say something (passt also reports its failed syslog sends). */
function lastLines(file: string): string {
  try {
    const lines = readFileSync(file, "utf8").split("\n").filter((l) => l.trim() && !l.startsWith("Failed to send"));
    return lines.slice(-3).join(" / ") || "no message";
  } catch {
    return "no message";
  }
}

/**
 * An IPv4 frame cut to the length its IP header says. A NIC pads short frames to the 60-byte
 * Ethernet minimum (the guest's ne2k driver does); passt (2023) counts the padding as TCP payload and
 * drops the segment, so a lone "1\n" from the guest would never arrive. qemu's virtio-net never pads.
 */
export function withoutPadding(frame: Uint8Array): Uint8Array {
  if (frame.length <= 34 || frame[12] !== 0x08 || frame[13] !== 0x00) return frame;
  const total = 14 + ((frame[16]! << 8) | frame[17]!);
  return total >= 34 && total < frame.length ? frame.subarray(0, total) : frame;
}

function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

/** A TAP device through socat (one frame per UDP datagram on loopback). */
export class TapLink extends NetLink {
  private udp: UdpSocket | undefined;
  private socat: ChildProcess | undefined;
  private socatPort = 0;

  constructor(spec: Extract<NetSpec, { mode: "tap" }>, options: NetLinkOptions) {
    super(spec, options);
  }

  protected async connectOnce(): Promise<void> {
    if (this.spec.mode !== "tap") return;
    if (!this.udp) {
      const udp = createSocket("udp4");
      udp.on("message", (msg, from) => {
        if (from.port === this.socatPort) this.received([new Uint8Array(msg)]);
      });
      udp.on("error", (e) => this.log.warn({ error: e.message }, "udp socket error"));
      await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
      if (this.closed) return void udp.close(); // closed while binding: stop() found nothing
      this.udp = udp;
    }
    const ours = this.udp.address().port;
    this.socatPort = await freePort();
    if (this.closed) return;
    const args = ["-b", "65536", `UDP4-DATAGRAM:127.0.0.1:${ours},bind=127.0.0.1:${this.socatPort}`, `TUN,tun-type=tap,tun-name=${this.spec.name},iff-up,iff-no-pi`];
    // socat dies with this process (a SIGKILLed primary must not leave the TAP device held)
    const child = spawn("setpriv", ["--pdeathsig", "KILL", "--", "socat", ...args], { stdio: ["ignore", "ignore", "pipe"] });
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const exited = new Promise<string>((resolve) => {
      child.once("error", (e: NodeJS.ErrnoException) => resolve(e.code === "ENOENT" ? "setpriv is not installed (Debian package util-linux)" : e.message));
      child.once("exit", (code, signal) => resolve(code === 127 ? "socat is not installed (Debian package socat)" : `socat exited (${code ?? signal}): ${stderr.trim().split("\n").at(-1) ?? "no message"}`));
    });
    this.socat = child;
    // socat has no "ready" signal: it failed fast (no such device, no permission) or it runs
    const early = await Promise.race([exited, new Promise<undefined>((r) => setTimeout(r, 150))]);
    if (early !== undefined) throw new Error(early);
    if (this.closed) {
      // closed meanwhile: stop() already ran, so this socat is stopped here
      this.socat = undefined;
      if (running(child)) child.kill("SIGTERM");
      return;
    }
    void exited.then((why) => {
      if (this.socat === child) {
        this.socat = undefined;
        this.wentDown(why);
      }
    });
    this.wentUp();
  }

  protected write(frames: Uint8Array[]): void {
    for (const f of frames) this.udp?.send(f, this.socatPort, "127.0.0.1");
  }

  protected async stop(): Promise<void> {
    const child = this.socat;
    this.socat = undefined;
    if (running(child)) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
    const udp = this.udp;
    this.udp = undefined;
    await new Promise<void>((r) => (udp ? udp.close(() => r()) : r()));
  }
}

/** The link for a spec (undefined for none). Call `start()` to bring it up. */
export function makeNetLink(spec: NetSpec, options: NetLinkOptions): NetLink | undefined {
  switch (spec.mode) {
    case "none":
      return undefined;
    case "user":
    case "passt":
      return new PasstLink(spec, options);
    case "tap":
      return new TapLink(spec, options);
  }
}

/**
 * A gratuitous ARP request from the guest's MAC for its own IPv4 address: after a takeover, switches
 * and bridges learn that the guest now sits behind the new primary's port.
 */
export function gratuitousArp(mac: Uint8Array, ip: Uint8Array): Uint8Array {
  const f = new Uint8Array(60); // the minimum Ethernet frame, zero padded
  f.fill(0xff, 0, 6);
  f.set(mac, 6);
  f.set([0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6, 4, 0x00, 0x01], 12);
  f.set(mac, 22);
  f.set(ip, 28);
  f.set(ip, 38); // target hardware address stays zero
  return f;
}

/**
 * A link for a machine run by one process (run, record): frames from the host go to `deliver` (the
 * machine's NIC), and the caller sends the machine's frames with `link.send`. Undefined for none.
 */
export function startNetLink(spec: NetSpec | undefined, logger: Logger, deliver: (frames: Uint8Array[]) => void): NetLink | undefined {
  const link = spec ? makeNetLink(spec, { logger, onFrames: deliver }) : undefined;
  link?.start();
  if (link && spec?.mode === "user" && spec.forwards.length > 0) {
    link.log.info({ forwards: spec.forwards.map((f) => `127.0.0.1:${f.host} -> guest:${f.guest}`) }, "host ports forwarded to the guest");
  }
  return link;
}

/** A network for a machine without a card is a mistake worth saying at once. */
export function requireNic(spec: NetSpec | undefined, config: { name: string; nic?: unknown }): void {
  if (spec && spec.mode !== "none" && !config.nic) {
    throw new LockstepError(ErrorCode.netMode, `--net ${describeNetSpec(spec)}: machine "${config.name}" has no network card`, 'add "nic": {"type": "ne2k", "mac": "52:54:00:12:34:56"} to its config, or drop --net');
  }
}
