// Heartbeat datagrams: the codec (authenticated, refused clearly when not ours) and the UDP sockets of
// two nodes on loopback (a backup sends to the address it dials, a primary answers where the
// datagrams come from; a replayed datagram is ignored).
import { createSocket } from "node:dgram";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { PeerBeats } from "../../ft/runtime/peer-beats.js";
import { until } from "../../ft/runtime/until.js";
import { decodePeerBeat, encodePeerBeat } from "../../ft/wire/peer-beat.js";

const key = "peer-token-1";

describe("heartbeat datagram codec", () => {
  it("round-trips a beat", () => {
    const b = encodePeerBeat({ nodeId: "backup-ü", epoch: 7, at: 1234.5 }, key);
    expect(decodePeerBeat(b, key)).toEqual({ nodeId: "backup-ü", epoch: 7, at: 1234.5 });
  });

  it("refuses another key, a flipped bit, a truncated datagram, another version and foreign bytes", () => {
    const b = encodePeerBeat({ nodeId: "A", epoch: 1, at: 1 }, key);
    expect(decodePeerBeat(b, "another-token")).toEqual({ refused: expect.stringContaining("bad MAC") });
    const flipped = Buffer.from(b);
    flipped[10]! ^= 1;
    expect(decodePeerBeat(flipped, key)).toEqual({ refused: expect.stringContaining("bad MAC") });
    expect(decodePeerBeat(b.subarray(0, b.length - 1), key)).toEqual({ refused: expect.stringContaining("length") });
    const v2 = Buffer.from(b);
    v2[4] = 2;
    expect(decodePeerBeat(v2, key)).toEqual({ refused: expect.stringContaining("version 2") });
    expect(decodePeerBeat(Buffer.from("GET / HTTP/1.1\r\n\r\n"), key)).toEqual({ refused: "not a heartbeat datagram" });
    expect(decodePeerBeat(Buffer.alloc(0), key)).toEqual({ refused: "not a heartbeat datagram" });
  });
});

describe("heartbeat datagram sockets", () => {
  const open: PeerBeats[] = [];
  afterEach(() => {
    for (const b of open.splice(0)) b.close();
  });
  const log = pino({ level: "silent" });
  let clock = 1000;
  const make = (nodeId: string, heard: Array<[string, number]>) => {
    const b = new PeerBeats(log, nodeId, key, { beat: (n, e) => heard.push([n, e]) }, () => clock++);
    open.push(b);
    return b;
  };

  it("a backup's datagrams reach the address it dials; the primary answers where they came from", async () => {
    const atPrimary: Array<[string, number]> = [];
    const atBackup: Array<[string, number]> = [];
    const primary = make("A", atPrimary);
    const backup = make("B", atBackup);
    const probe = createSocket("udp4");
    await new Promise<void>((r) => probe.bind(0, "127.0.0.1", r));
    const port = (probe.address() as { port: number }).port;
    probe.close();
    expect(await primary.bind("127.0.0.1", port)).toBe(true);
    expect(await backup.bind("127.0.0.1", 0)).toBe(true);
    primary.send("B", 1); // nowhere to send yet: it has not heard B
    expect(primary.sent).toBe(0);
    backup.dialing(`ws://127.0.0.1:${port}`);
    backup.send("A", 1);
    await until(() => atPrimary.length === 1, 5000, "the primary to hear the backup's datagram");
    expect(atPrimary).toEqual([["B", 1]]);
    primary.send("B", 1);
    await until(() => atBackup.length === 1, 5000, "the backup to hear the primary's answer");
    expect(atBackup).toEqual([["A", 1]]);
  });

  it("ignores a replayed (or reordered) datagram, refuses one with another key; a port in use leaves the node without datagrams", async () => {
    const heard: Array<[string, number]> = [];
    const primary = make("A", heard);
    expect(await primary.bind("127.0.0.1", 0)).toBe(true);
    const port = (primary as unknown as { socket: { address(): { port: number } } }).socket.address().port;
    const raw = createSocket("udp4");
    const send = (b: Buffer) => new Promise<void>((r) => raw.send(b, port, "127.0.0.1", () => r()));
    const beat = encodePeerBeat({ nodeId: "B", epoch: 1, at: 5000 }, key);
    await send(beat);
    await until(() => heard.length === 1, 5000, "the first datagram");
    await send(beat); // the same again: a replay
    await send(encodePeerBeat({ nodeId: "B", epoch: 1, at: 6000 }, "wrong-token"));
    await until(() => primary.refused === 1 && primary.stale === 1, 5000, "the replay ignored as stale, the bad one refused");
    expect(heard).toHaveLength(1);
    raw.close();
    const second = make("C", []);
    expect(await second.bind("127.0.0.1", port)).toBe(false);
  });
});
