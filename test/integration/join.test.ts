// Re-protection from a checkpoint (FT VMotion), with real processes: kill the primary, let the
// backup take over, join a new backup from a checkpoint of the running survivor (--join), kill the
// new primary: the second takeover works and the console counter stream is still contiguous.
// The first primary keeps no log from power-on (--power-on-log-mib 0, as any primary after its
// log outgrew the bound): the first backup, started without --join, is sent a checkpoint instead
// of a log that is no longer held.
import { afterAll, describe, expect, it } from "vitest";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { until as poll } from "../../ft/runtime/until.js";
import { TestCluster, token } from "../support/cluster.js";

const cluster = new TestCluster();
afterAll(() => cluster.stop());

describe("re-protection from a checkpoint", () => {
  it("takeover, --join a new backup, takeover again: the counter stream stays contiguous", async () => {
    const a = await cluster.start("A", "primary", ["--image", "linux", "--power-on-log-mib", "0"]);
    const b = await cluster.start("B", "backup", ["--connect", a.url]);
    const client = new ConsoleClient({ urls: [a.url, b.url], token });
    let out = "";
    client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    client.start();
    const until = (check: () => boolean | Promise<boolean>, timeoutMs: number, what: string | (() => string)) =>
      poll(check, timeoutMs, () => `${typeof what === "string" ? what : what()}; output tail ${JSON.stringify(out.slice(-300))}`);
    const counters = () => [...out.matchAll(/^c(\d+)\r$/gm)].map((m) => Number(m[1]));
    try {
      await until(() => /lockstep:\/root# /.test(out), 90_000, "the prompt");
      await until(async () => (await a.status()).protected === true, 30_000, () => `B to protect A; B: ${b.stderr.slice(-2500)}\nA: ${a.stderr.slice(-2500)}`);
      expect(b.stderr).toMatch(/the primary's log no longer starts at power-on: joining from a checkpoint/);
      expect(b.stderr).toMatch(/checkpoint received: following the log from there/);
      client.send(Buffer.from("i=0; while true; do echo c$i; i=$((i+1)); usleep 10000; done\r"));
      await until(() => (counters().at(-1) ?? 0) >= 30, 30_000, "counting");
      a.kill("SIGKILL");
      await b.waitEvent("live", 10_000);
      const c = await cluster.start("C", "backup", ["--connect", b.url, "--join"]);
      client.addUrl(c.url);
      await until(async () => (await b.status()).protected === true, 60_000, () => `C to protect B; C: ${c.stderr.slice(-2500)}\nB: ${b.stderr.slice(-1500)}`);
      const s = await b.status();
      expect(s.lastJoin).toMatchObject({ pauseMs: expect.any(Number), bytes: expect.any(Number) });
      expect(c.stderr).toMatch(/checkpoint received: following the log from there/);
      const before = counters().at(-1)!;
      await until(() => (counters().at(-1) ?? 0) >= before + 20, 30_000, "counting after the join");
      b.kill("SIGKILL");
      await c.waitEvent("live", 10_000);
      const after = counters().at(-1)!;
      await until(() => (counters().at(-1) ?? 0) >= after + 50, 30_000, "counting after the second takeover");
      const numbers = counters();
      numbers.forEach((n, i) => expect(n, `counter line ${i}`).toBe(i));
      expect((await c.status()).role).toBe("primary");
    } finally {
      client.close();
    }
  }, 240_000);
});
