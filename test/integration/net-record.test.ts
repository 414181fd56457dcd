// A networked session recorded through passt (which captures what it exchanged with the guest,
// `passt -p`), then replayed offline with no network attached: the replay is complete with every
// digest verified, and `log pcap` writes the frames in and out, frame for frame what passt saw, in a
// pcap that tcpdump reads. Bad input: an unknown --net mode, a frame entry over the MTU in a log.
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../../ft/runtime/free-port.js";
import { withoutPadding } from "../../ft/runtime/passt-link.js";
import { until } from "../../ft/runtime/until.js";
import { getCount } from "../../scripts/guest-clients.js";
import { cliPath, runCli } from "../support/cli.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-net-record-"));
chmodSync(dir, 0o1777); // passt started by root runs as nobody
const killed: number[] = [];
afterAll(() => {
  for (const pid of killed) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // gone
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Frames of a classic pcap file. */
function readPcap(bytes: Buffer): Uint8Array[] {
  expect(bytes.readUInt32LE(0)).toBe(0xa1b2c3d4);
  expect(bytes.readUInt32LE(20)).toBe(1); // Ethernet
  const frames: Uint8Array[] = [];
  for (let at = 24; at + 16 <= bytes.length; ) {
    const n = bytes.readUInt32LE(at + 8);
    frames.push(new Uint8Array(bytes.subarray(at + 16, at + 16 + n)));
    at += 16 + n;
  }
  return frames;
}

const hex = (f: Uint8Array) => Buffer.from(f).toString("hex");
const guestMac = "525400123456";

describe("a networked session offline", () => {
  it("records through passt, replays with no network, and log pcap matches passt's own capture", async () => {
    const port = await freePort();
    const socket = join(dir, "passt.sock");
    const capture = join(dir, "passt.pcap");
    const passt = spawn("passt", ["-f", "-q", "-4", "-s", socket, "-a", "10.0.2.15", "-n", "24", "-g", "10.0.2.2", "--no-dhcp", "-t", `127.0.0.1/${port}:80`, "-u", "none", "-p", capture], { stdio: "ignore" });
    killed.push(passt.pid!);
    await until(() => spawnSync("test", ["-S", socket]).status === 0, 10_000, "passt's socket");

    const script = join(dir, "session.script");
    // the guest waits until it has served three requests (the test makes them), then says so; the
    // recording goes on a little, so that the last connection's closing frames are in it too
    writeFileSync(script, ['wait "guest ready"', 'sendline "until [ \\"$(cat /tmp/count 2>/dev/null)\\" = 3 ]; do usleep 100000; done; echo served-$(cat /tmp/count)"', 'wait "served-3"', "sleep 3", ""].join("\n"));
    const log = join(dir, "net.lslog");
    const rec = spawn(process.execPath, [cliPath, "record", "--net", `passt:${socket}`, "--input", script, "--out", log, "--digest-every", "50"], { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, LOCKSTEP_LOG_LEVEL: "warn" } });
    killed.push(rec.pid!);
    let out = "";
    let err = "";
    rec.stdout.on("data", (d: Buffer) => (out += d.toString()));
    rec.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const exited = new Promise<number | null>((r) => rec.once("exit", r));
    await until(() => out.includes("guest ready"), 90_000, () => `the guest to boot; ${err}`);
    const answers: number[] = [];
    // "guest ready" comes as httpd starts: on a busy host the first connection can reach the guest
    // before httpd listens, and the guest resets it (nothing was served: the count is unchanged)
    const getCountOnceUp = async (): Promise<number> => {
      for (let tries = 0; ; tries++) {
        try {
          return await getCount("127.0.0.1", port, 30_000);
        } catch (e) {
          const code = (e as NodeJS.ErrnoException).code;
          if (answers.length > 0 || tries >= 20 || (code !== "ECONNRESET" && code !== "ECONNREFUSED")) throw e;
          await new Promise((r) => setTimeout(r, 500));
        }
      }
    };
    for (let i = 0; i < 3; i++) answers.push(await getCountOnceUp());
    expect(answers).toEqual([1, 2, 3]);
    expect(await exited).toBe(0);
    passt.kill("SIGTERM");
    await new Promise((r) => passt.once("exit", r));

    const replay = runCli(["replay", "--json", log], { timeoutMs: 120_000 });
    expect(replay.status, replay.stderr).toBe(0);
    const report = JSON.parse(replay.stdout) as { complete: boolean; digestsChecked: number; netFramesIn: number; netFramesOut: number };
    expect(report.complete).toBe(true);
    expect(report.digestsChecked).toBeGreaterThan(0);
    expect(report.netFramesIn).toBeGreaterThan(10);

    const pcapFile = join(dir, "net.pcap");
    const pcap = spawnSync(process.execPath, [cliPath, "log", "pcap", log], { timeout: 120_000, maxBuffer: 64 << 20 });
    expect(pcap.status, pcap.stderr.toString()).toBe(0);
    writeFileSync(pcapFile, pcap.stdout);
    const ours = readPcap(pcap.stdout);
    const theirs = readPcap(readFileSync(capture));
    // passt saw the guest's frames without Ethernet padding (the link trims it for passt)
    const fromGuest = (frames: Uint8Array[]) => frames.filter((f) => hex(f.subarray(6, 12)) === guestMac).map((f) => hex(withoutPadding(f)));
    const toGuest = (frames: Uint8Array[]) => frames.filter((f) => hex(f.subarray(6, 12)) !== guestMac).map(hex);
    expect(fromGuest(ours)).toEqual(fromGuest(theirs));
    expect(toGuest(ours)).toEqual(toGuest(theirs));
    expect(fromGuest(ours).length).toBe(report.netFramesOut);
    expect(toGuest(ours).length).toBe(report.netFramesIn);
    const dump = runCli(["log", "dump", log]);
    expect(dump.stdout).toMatch(/net in IP 10\.0\.2\.2\.\d+ > 10\.0\.2\.15\.80: TCP \[S\]/);
    expect(dump.stdout).toMatch(/# nic ne2k 52:54:00:12:34:56/);
    const tcpdump = spawnSync("tcpdump", ["-nr", pcapFile], { encoding: "utf8" });
    if (tcpdump.error) throw new Error(`tcpdump is needed (Debian package tcpdump): ${tcpdump.error.message}`);
    expect(tcpdump.stdout).toMatch(/10\.0\.2\.15\.80 > 10\.0\.2\.2\.\d+: Flags \[S\.\]/);
    // through pipes: a reader that lags, and one that goes away early
    const piped = spawnSync("sh", ["-c", `"${process.execPath}" "${cliPath}" log pcap "${log}" | tcpdump -nr - | grep -c "Flags"; "${process.execPath}" "${cliPath}" log pcap "${log}" | head -c 100 | wc -c`], { encoding: "utf8", timeout: 240_000 });
    expect(piped.stderr).not.toMatch(/internal error|EAGAIN|EPIPE/);
    const [flags, headBytes] = piped.stdout.trim().split("\n").map(Number);
    expect(flags).toBeGreaterThan(10);
    expect(headBytes).toBe(100);
  }, 240_000);

  it("refuses an unknown --net mode, a malformed forward and a network for a machine without a card, with stable codes", () => {
    const bad = runCli(["run", "--net", "slirp"]);
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/LOCKSTEP_ERR_NET_MODE: --net "slirp": unknown mode "slirp"/);
    const badForward = runCli(["record", "--out", join(dir, "x.lslog"), "--net", "user:80"]);
    expect(badForward.stderr).toMatch(/LOCKSTEP_ERR_NET_MODE: --net "user:80": "80" is not HOSTPORT=GUESTPORT/);
    const noCard = runCli(["record", "--image", "tiny", "--out", join(dir, "y.lslog"), "--net", "user"]);
    expect(noCard.status).toBe(2);
    expect(noCard.stderr).toMatch(/LOCKSTEP_ERR_NET_MODE: --net user: machine "tiny" has no network card/);
  });
});
