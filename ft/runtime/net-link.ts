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
 *
 * This file is what every link does; net-spec.ts parses `--net`, passt-link.ts and tap-link.ts are
 * the two kinds, open-net-link.ts opens the one a spec names.
 */
import type { ChildProcess } from "node:child_process";
import type { Logger } from "pino";
import { ErrorCode } from "../../emulator/lockstep-error.js";
import { frameBytesMax, frameBytesMin } from "../../hypervisor/event-log/net-frame.js";
import { describeNetSpec, type NetSpec } from "./net-spec.js";

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
export const running = (child: ChildProcess | undefined): child is ChildProcess => child !== undefined && child.exitCode === null && child.signalCode === null;

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

