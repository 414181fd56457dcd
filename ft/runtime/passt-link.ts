/** PasstLink: the guest's network through passt (user mode, or a passt the user started). */
import { spawn, type ChildProcess } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { NetLink, running, type NetLinkOptions } from "./net-link.js";
import { describeNetSpec, passtDirFor, readPid, userModeGuest, type NetSpec } from "./net-spec.js";

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

