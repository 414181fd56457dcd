// Real processes and sockets: a linux guest prints a line about every 10 ms with a counter, its
// uptime and the character typed on the console meanwhile, if any, so the output depends on logged
// input (clock readings and console input); the primary is SIGKILLed at a seeded random moment and
// the backup takes over. If output left the primary before the backup had the input it depended
// on, the new primary would print different lines at the same offsets: the client's overlap check
// reports that, and a line spliced from the two runs, a repeated or lost counter, an uptime that
// goes back, or a typed line lost or applied twice fails the checks below.
import { afterAll, describe, expect, it } from "vitest";
import { ConsoleClient, type ConsoleContradiction } from "../../ft/runtime/console-client.js";
import { until } from "../../ft/runtime/until.js";
import { SeededRandom } from "../../ft/testing/seeded-random.js";
import { TestCluster, token } from "../support/cluster.js";

const cluster = new TestCluster();
afterAll(() => cluster.stop());

const seed = process.env.LOCKSTEP_TEST_SEED !== undefined ? Number(process.env.LOCKSTEP_TEST_SEED) : Math.floor(Math.random() * 2 ** 32);

// Echo off: typed characters reach only `read`, never the screen between the loop's lines. One
// character per `read`, in non-canonical mode: busybox's `read -t` drops a line whose characters
// it has begun to consume when the timeout runs out, a single character it takes whole. `read` of
// /proc/uptime is a builtin, so a line costs no fork.
const guestLoop = 'stty -echo -icanon min 1 time 0; i=0; while true; do x=; read -t 0.01 -n 1 x; read u rest < /proc/uptime; echo "c$i $u $x"; i=$((i+1)); done\r';
const lineRe = /^c(\d+) (\d+\.\d+) (\S?)\r$/;

describe("failover with real processes", () => {
  it("SIGKILL of the primary: the backup takes over; the output, which depends on logged input, goes on unchanged", async () => {
    console.log(`failover test seed ${seed} (LOCKSTEP_TEST_SEED=${seed} repeats the kill moment)`);
    const random = new SeededRandom(seed);
    const a = await cluster.start("A", "primary", ["--image", "linux"]);
    const b = await cluster.start("B", "backup", ["--connect", a.url]);
    const client = new ConsoleClient({ urls: [a.url, b.url], token });
    let out = "";
    const contradictions: ConsoleContradiction[] = [];
    client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    client.on("contradiction", (c: ConsoleContradiction) => contradictions.push(c));
    let offsetAtTakeover: number | undefined;
    client.on("attached", (url: string) => {
      if (url === b.url) offsetAtTakeover ??= client.offset;
    });
    client.start();
    const tail = () => `; output tail ${JSON.stringify(out.slice(-400))}`;
    /** The loop's lines so far (the last one only once it is complete). */
    const lines = () => {
      const start = out.indexOf("\nc0 ");
      return start < 0 ? [] : out.slice(start + 1).split("\n").slice(0, -1);
    };
    const counter = () => Number(lineRe.exec(lines().at(-1) ?? "")?.[1] ?? -1);
    const reach = (n: number) => until(() => counter() >= n, 30_000, () => `counter ${n}${tail()}`);
    const typed: string[] = [];
    const type = (token: string) => {
      typed.push(token);
      client.send(Buffer.from(`${token}\r`));
    };
    /** The characters typed so far, as the loop printed them (the newline ending a token reads as none). */
    const received = () => lines().map((l) => lineRe.exec(l)?.[3] ?? "").join("");
    const shown = (token: string) => until(() => received().includes(token), 30_000, () => `${token} in the loop's lines${tail()}`);
    try {
      await until(() => /lockstep:\/root# /.test(out), 90_000, () => `the prompt${tail()}`);
      await until(async () => (await a.status()).protected === true, 10_000, () => `B to protect A; B: ${b.stderr.slice(-1500)}`);
      client.send(Buffer.from(guestLoop));
      const killAt = random.int(20, 169);
      await reach(Math.floor(killAt / 3));
      type("in1");
      await shown("in1");
      await reach(Math.floor((2 * killAt) / 3));
      type("in2");
      await shown("in2");
      await reach(killAt);
      await new Promise((r) => setTimeout(r, random.next() * 10)); // anywhere within a line
      type("in3"); // most likely not yet acknowledged when the primary dies: the client resends it to B
      a.kill("SIGKILL");
      await b.waitEvent("live", 10_000);
      await shown("in3");
      type("in4");
      await shown("in4");
      await reach(killAt + 150);
    } finally {
      client.close();
    }
    const all = lines();
    const parsed = all.map((l, i) => {
      const m = lineRe.exec(l);
      if (!m) throw new Error(`line ${i} is not one of the loop's lines: ${JSON.stringify(l)}`);
      return { n: Number(m[1]), uptime: Number(m[2]), token: m[3] };
    });
    parsed.forEach((p, i) => expect(p.n, `counter of line ${i}`).toBe(i));
    for (let i = 1; i < parsed.length; i++) expect(parsed[i]!.uptime, `uptime of line ${i}`).toBeGreaterThanOrEqual(parsed[i - 1]!.uptime);
    expect(parsed.at(-1)!.uptime).toBeGreaterThan(parsed[0]!.uptime);
    // every typed character once, in order
    expect(parsed.map((p) => p.token).join("")).toBe(typed.join(""));
    // the new primary resent the client's last bytes (up to 4096 of them), and they were the same
    expect(contradictions).toEqual([]);
    expect(offsetAtTakeover).toBeGreaterThan(0);
    expect(client.overlapCheckedBytes).toBeGreaterThanOrEqual(Math.min(4096, offsetAtTakeover!));
    expect(await b.status()).toMatchObject({ role: "primary", epoch: 2, protected: false });
  }, 240_000);
});
