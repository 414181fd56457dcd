// Real processes and sockets: a linux guest prints a counter every 10 ms while a console client
// reads; the primary is SIGKILLed at a random moment; the backup takes over and the client's counter
// stream is contiguous (no number lost or repeated).
import { afterAll, describe, expect, it } from "vitest";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { TestCluster, token } from "../support/cluster.js";

const cluster = new TestCluster();
afterAll(() => cluster.stop());

describe("failover with real processes", () => {
  it("SIGKILL of the primary: the backup takes over, the console counter stream is contiguous", async () => {
    const a = await cluster.start("A", "primary", ["--image", "linux"]);
    const b = await cluster.start("B", "backup", ["--connect", a.url]);
    const client = new ConsoleClient({ urls: [a.url, b.url], token });
    let out = "";
    client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    client.start();
    const waitFor = async (re: RegExp, timeoutMs: number) => {
      const deadline = Date.now() + timeoutMs;
      while (!re.test(out)) {
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; output tail: ${JSON.stringify(out.slice(-400))}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    try {
      await waitFor(/lockstep:\/root# /, 90_000);
      for (let i = 0; i < 100 && (await a.status()).protected !== true; i++) await new Promise((r) => setTimeout(r, 100));
      expect((await a.status()).protected, JSON.stringify([await a.status(), await b.status()])).toBe(true);
      client.send(Buffer.from("i=0; while true; do echo c$i; i=$((i+1)); usleep 10000; done\r"));
      const killAt = 20 + Math.floor(Math.random() * 150);
      await waitFor(new RegExp(`\\bc${killAt}\\r\\n`), 30_000);
      a.kill("SIGKILL");
      await b.waitEvent("live", 10_000);
      await waitFor(new RegExp(`\\bc${killAt + 150}\\r\\n`), 30_000);
      const numbers = [...out.matchAll(/^c(\d+)\r$/gm)].map((m) => Number(m[1]));
      expect(numbers.length).toBeGreaterThan(killAt + 150);
      numbers.forEach((n, i) => expect(n, `counter line ${i}`).toBe(i));
      const s = await b.status();
      expect(s).toMatchObject({ role: "primary", epoch: 2, protected: false });
    } finally {
      client.close();
    }
  });
});
