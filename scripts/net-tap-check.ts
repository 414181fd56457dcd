/**
 * Bridged networking under fault tolerance, inside a network namespace of its own:
 *
 *   unshare -rn node dist/scripts/net-tap-check.js      (the test runs it so; never the host's network)
 *
 * Makes a bridge br0 (10.0.2.2/24, the guest's gateway) with two TAP devices, tapA and tapB, starts a
 * primary on tapA and a backup on tapB (`--net tap:NAME`: each node owns its device), and connects a
 * client, the namespace's own Linux TCP, to the guest's numbers server (10.0.2.15:7000). The client
 * only reads: a stream in which only the guest sends. An HTTP loop on the guest's request counter
 * runs beside it. The primary is SIGKILLed mid-stream; the
 * backup takes over on tapB and announces the guest's MAC (gratuitous ARP), so the bridge moves it.
 * Prints one JSON line: the numbers received (every one once, in order?), whether the connection
 * reset, and which port the bridge holds the guest's MAC on. Exit status 0 when all is well.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NodeProcess } from "../ft/runtime/node-process.js";
import { until } from "../ft/runtime/until.js";
import { getCount, streamNumbers, type NumberStream } from "./guest-clients.js";

const guestMac = "52:54:00:12:34:56";
const sh = (...cmd: string[]) => execFileSync(cmd[0]!, cmd.slice(1), { encoding: "utf8" });

function setUpBridge(): void {
  sh("ip", "link", "set", "lo", "up");
  sh("ip", "link", "add", "br0", "type", "bridge");
  sh("ip", "addr", "add", "10.0.2.2/24", "dev", "br0");
  for (const tap of ["tapA", "tapB"]) {
    sh("ip", "tuntap", "add", "dev", tap, "mode", "tap");
    sh("ip", "link", "set", tap, "master", "br0");
    sh("ip", "link", "set", tap, "up");
  }
  sh("ip", "link", "set", "br0", "up");
}

/** The bridge port the guest's MAC is learned on, if any. */
function guestPort(): string | undefined {
  const line = sh("bridge", "fdb", "show", "br", "br0").split("\n").find((l) => l.startsWith(guestMac));
  return line ? /dev (\S+)/.exec(line)?.[1] : undefined;
}

async function main(): Promise<number> {
  setUpBridge();
  const dir = mkdtempSync(join(tmpdir(), "lockstep-tap-check-"));
  const token = "tap-check-token";
  const nodes: NodeProcess[] = [];
  let stream: NumberStream | undefined;
  try {
    const a = await NodeProcess.start({ role: "primary", name: "A", sharedDir: dir, token, args: ["--image", "linux", "--net", "tap:tapA"] });
    nodes.push(a);
    const b = await NodeProcess.start({ role: "backup", name: "B", sharedDir: dir, token, args: ["--connect", a.url, "--net", "tap:tapB"] });
    nodes.push(b);
    const logs = () => `A: ${a.stderr.slice(-1500)}\nB: ${b.stderr.slice(-1500)}`;
    await until(async () => (await a.status()).protected === true, 90_000, () => `B to protect A; ${logs()}`);
    // the client only reads: a stream in which only the guest sends (Linux's TCP needs no help)
    stream = await streamNumbers("10.0.2.15", 7000, { talk: false, timeoutMs: 90_000, what: logs });
    const numbers = () => stream!.numbers();
    const last = () => numbers().at(-1) ?? 0;
    const before = guestPort();
    // an HTTP loop beside the stream: every request answered once, the guest's count going 1, 2, 3 ...
    const answers: number[] = [];
    const failures: string[] = [];
    let requests = 0;
    let looping = true;
    const loop = (async () => {
      while (looping) {
        requests++;
        try {
          answers.push(await getCount("10.0.2.15", 80, 30_000));
        } catch (e) {
          failures.push((e as Error).message);
        }
      }
    })();
    await until(() => last() >= 20 + Math.floor(Math.random() * 20), 60_000, "numbers before the kill");
    a.kill("SIGKILL");
    await b.waitEvent("live", 15_000);
    const atKill = last();
    await until(() => last() >= atKill + 30, 60_000, () => `numbers after the takeover (at ${last()}); ${logs()}`);
    looping = false;
    await loop;
    const got = numbers();
    const inOrder = got.every((n, i) => n === i + 1);
    const answeredInOrder = answers.length === requests && answers.every((n, i) => n === i + 1);
    const reset = stream.problems.length > 0;
    const result = { numbers: got.length, inOrder, reset, macPortBefore: before ?? null, macPortAfter: guestPort() ?? null, takeoverAt: atKill, requests, answeredInOrder, failures };
    process.stdout.write(JSON.stringify(result) + "\n");
    return inOrder && !reset && answeredInOrder && before === "tapA" && result.macPortAfter === "tapB" ? 0 : 1;
  } finally {
    stream?.close();
    for (const n of nodes) n.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.waitExit(10_000).catch(() => undefined)));
    rmSync(dir, { recursive: true, force: true });
  }
}

main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`net-tap-check: ${e.message}\n`);
    process.exit(2);
  },
);
