/**
 * The guest's network card, with no host link: frames are queued with the recorder and the guest's
 * answers are read from the slices. The guest answers ARP and ping at its fixed MAC and address.
 */
import { describe, expect, it } from "vitest";
import { GuestDriver } from "../support/guest-driver.js";
import { describeFrame } from "../../hypervisor/event-log/frame-summary.js";

const guestMac = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const hostMac = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];
const hostIp = [10, 0, 2, 2];
const guestIp = [10, 0, 2, 15];

function arpRequest(): Uint8Array {
  const f = new Uint8Array(60);
  f.fill(0xff, 0, 6);
  f.set(hostMac, 6);
  f.set([0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1], 12);
  f.set(hostMac, 22);
  f.set(hostIp, 28);
  f.set(guestIp, 38);
  return f;
}

function checksum(b: Uint8Array, from: number, to: number): number {
  let s = 0;
  for (let i = from; i < to; i += 2) s += (b[i]! << 8) | (b[i + 1] ?? 0);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

function ping(seq: number): Uint8Array {
  const payload = 32;
  const f = new Uint8Array(14 + 20 + 8 + payload);
  f.set(guestMac, 0);
  f.set(hostMac, 6);
  f.set([0x08, 0x00], 12);
  const ip = 14;
  f.set([0x45, 0, 0, 20 + 8 + payload, 0, seq, 0x40, 0, 64, 1, 0, 0], ip);
  f.set(hostIp, ip + 12);
  f.set(guestIp, ip + 16);
  const c = checksum(f, ip, ip + 20);
  f[ip + 10] = c >> 8;
  f[ip + 11] = c & 0xff;
  const icmp = ip + 20;
  f.set([8, 0, 0, 0, 0x12, 0x34, 0, seq], icmp);
  for (let i = 0; i < payload; i++) f[icmp + 8 + i] = i;
  const ic = checksum(f, icmp, f.length);
  f[icmp + 2] = ic >> 8;
  f[icmp + 3] = ic & 0xff;
  return f;
}

describe("the guest's network card", () => {
  it("answers ARP and ping at its fixed MAC and address, frames one slice apart or in a burst", async () => {
    const g = await GuestDriver.boot({ image: "linux" });
    g.runUntil("guest ready");
    const out: string[] = [];
    const run = (slices: number) => {
      for (let i = 0; i < slices; i++) {
        g.recorder.boundary(undefined);
        const r = g.session.driver.runSlice();
        for (const f of r.net ?? []) out.push(describeFrame(f));
      }
    };
    run(200);
    out.length = 0;
    g.recorder.queueNet(arpRequest());
    run(50);
    expect(out).toContain("ARP 10.0.2.15 is-at 52:54:00:12:34:56 (52:54:00:12:34:56 > 02:00:00:00:00:02)");
    const replies = () => out.filter((l) => l === "IP 10.0.2.15 > 10.0.2.2: ICMP type 0 code 0").length;
    out.length = 0;
    for (let seq = 1; seq <= 5; seq++) {
      g.recorder.queueNet(ping(seq));
      run(50);
    }
    expect(replies()).toBe(5);
    out.length = 0;
    // a burst: all queued at once, delivered as the receive ring has room
    for (let seq = 6; seq <= 25; seq++) g.recorder.queueNet(ping(seq));
    run(200);
    expect(replies()).toBe(20);
    expect(g.recorder.netDropped).toBe(0);
  }, 120_000);
});
