// Networking under fault tolerance, with real processes and passt (user-mode networking): a TCP
// client that is not lockstep code (Node's `net` and `http`, no lockstep import on their path)
// holds a connection to a server in the guest that streams numbered lines, and another asks the
// guest's HTTP counter in a loop. The primary is SIGKILLed at a seeded random moment, a new backup
// joins from a checkpoint, and the new primary is SIGKILLed too. Every number arrives exactly
// once and in order, the connection never resets, and every HTTP request is answered once: the
// guest's own count goes up by one per answer (over passt, a request in flight at a kill may be
// lost: see the assertion).
import { afterAll, describe, expect, it } from "vitest";
import { freePort } from "../../ft/runtime/free-port.js";
import { stopPairPasst } from "../../ft/runtime/net-spec.js";
import { until as poll } from "../../ft/runtime/until.js";
import { SeededRandom } from "../../ft/testing/seeded-random.js";
import { getCount, streamNumbers } from "../../scripts/guest-clients.js";
import { TestCluster } from "../support/cluster.js";

const seed = process.env.LOCKSTEP_TEST_SEED !== undefined ? Number(process.env.LOCKSTEP_TEST_SEED) : Math.floor(Math.random() * 2 ** 32);
const cluster = new TestCluster();

afterAll(async () => {
  stopPairPasst(cluster.dir); // passt outlives the primaries (the next one attaches to it)
  await cluster.stop();
});

describe("networking under fault tolerance", () => {
  it("a TCP stream and an HTTP loop of a host client go on through two takeovers: every number once, in order; no reset; no request applied twice", async () => {
    console.log(`net failover test seed ${seed} (LOCKSTEP_TEST_SEED=${seed} repeats the kill moments)`);
    const random = new SeededRandom(seed);
    const httpPort = await freePort();
    const numbersPort = await freePort();
    const net = ["--net", `user:${httpPort}=80,${numbersPort}=7000`];
    const a = await cluster.start("A", "primary", ["--image", "linux", "--power-on-log-mib", "0", ...net]);
    const b = await cluster.start("B", "backup", ["--connect", a.url, ...net]);
    const netLines = (t: string) => t.split("\n").filter((l) => /"component":"net"|took over|live|halt/.test(l)).slice(-8).join("\n");
    const logs = () => `A: ${netLines(a.stderr)}\nB: ${netLines(b.stderr)}`;
    await poll(async () => (await a.status()).protected === true, 90_000, () => `B to protect A; ${logs()}`);

    // the numbers stream, the client talking (see streamNumbers: what passt needs)
    const stream = await streamNumbers("127.0.0.1", numbersPort, { talk: true, timeoutMs: 90_000, what: logs });
    const problems = stream.problems;
    const step = (what: string) => console.log(`${what}: at number ${last()}, ${answers.length} answers`);
    const numbers = () => stream.numbers();
    const last = () => numbers().at(-1) ?? 0;

    // the HTTP loop, one request at a time
    const answers: number[] = [];
    const failed: string[] = [];
    step("stream connected");
    let requests = 0;
    let looping = true;
    const loop = (async () => {
      while (looping) {
        requests++;
        try {
          answers.push(await getCount("127.0.0.1", httpPort, 10_000));
        } catch (e) {
          failed.push(`request ${requests}: ${(e as Error).message}`);
        }
      }
    })();

    try {
      const waitNumbers = async (n: number, what: string) => {
        try {
          await poll(() => last() >= n, 60_000, () => `${what} (at ${last()}, ${answers.length} answers, problems ${JSON.stringify(problems)}); ${logs()}`);
        } catch (e) {
          for (const node of [a, b]) console.log(node === a ? "A" : "B", JSON.stringify(await node.status().catch(() => "unreachable")));
          throw e;
        }
      };
      await waitNumbers(last() + 10 + random.int(0, 30), "numbers before the first kill");
      step("killing A");
      a.kill("SIGKILL");
      await b.waitEvent("live", 15_000);
      await waitNumbers(last() + 20, "numbers after the first takeover");
      step("joining C");
      const c = await cluster.start("C", "backup", ["--connect", b.url, "--join", ...net]);
      await poll(async () => (await b.status()).protected === true, 90_000, () => `C to protect B; C: ${c.stderr.slice(-2000)}\nB: ${b.stderr.slice(-1500)}`);
      await waitNumbers(last() + 10 + random.int(0, 30), "numbers before the second kill");
      step("killing B");
      b.kill("SIGKILL");
      await c.waitEvent("live", 15_000);
      await waitNumbers(last() + 30, "numbers after the second takeover");
      step("stopping the loop");
      looping = false;
      await loop;
      const got = numbers();
      got.forEach((n, i) => expect(n, `line ${i}`).toBe(i + 1));
      expect(problems).toEqual([]);
      // Each answer is the guest's count of requests served, so none was applied twice: the counts
      // only go up. Over passt (2023) a request in flight at a kill can be lost: its connection was
      // reset or hung (seen once in four clean-clone runs); the client then makes the next request on
      // a new connection. The guest may have served the lost one (a count skipped), never twice.
      // The same loop with Linux's TCP as the peer (bridged, scripts/net-tap-check.ts) must lose none.
      for (let i = 1; i < answers.length; i++) expect(answers[i]!, `answer ${i}`).toBeGreaterThan(answers[i - 1]!);
      expect(answers.length + failed.length).toBe(requests);
      expect(failed.length, failed.join("; ")).toBeLessThanOrEqual(2); // at most one per takeover
      expect(answers.at(-1)! - answers.length).toBeLessThanOrEqual(failed.length);
      expect(answers.length).toBeGreaterThan(3);
      const s = await c.status<{ net: { framesIn: number } }>();
      expect(s.net.framesIn).toBeGreaterThan(0);
      console.log(`${got.length} numbers and ${answers.length} requests through two takeovers`);
    } finally {
      looping = false;
      stream.close();
    }
  }, 400_000);
});
