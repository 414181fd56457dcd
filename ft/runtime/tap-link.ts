/** TapLink: the guest's network on a TAP device the user made (and put on a bridge), through socat. */
import { spawn, type ChildProcess } from "node:child_process";
import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { freePort } from "./free-port.js";
import { NetLink, running, type NetLinkOptions } from "./net-link.js";
import type { NetSpec } from "./net-spec.js";

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

