// A pair on a shaped link between two network namespaces, with the default heartbeat (50 ms) and
// failure timeout (400 ms): the logging channel passes a relay that adds 10 ms ± 2 ms each way
// (20 ms round trip) and both hosts lose 1% of their packets each way. For LINK_SECONDS (default
// 30) the guest writes records to the NBD disk: no false failover (same epoch, still protected). The
// heartbeat datagrams take the relay too; a channel stalled past the failure timeout while they
// arrived is ridden out (the test prints how often that happened).
// Then at 0.5% loss the primary is SIGKILLed: the backup takes over, the console goes on with every
// record once and in order, and the disk is clean. Prints the kill-to-live time on that link.
import { afterAll, describe, expect, it } from "vitest";
import { until } from "../../ft/runtime/until.js";
import { DelayRelay } from "../../ft/testing/delay-relay.js";
import { LabPair } from "../../ft/testing/lab-pair.js";

const linkSeconds = Number(process.env.LINK_SECONDS ?? 20);
/** Loss (% each way on both hosts) of the no-false-failover stretch; LINK_LOSS=4 makes channel stalls past the failure timeout likely. */
const linkLoss = Number(process.env.LINK_LOSS ?? 1);
let pair: LabPair | undefined;
let relay: DelayRelay | undefined;
afterAll(async () => {
  relay?.close();
  await pair?.stop();
});

describe("a pair on a shaped link (20 ms round trip, loss)", () => {
  it(`no false failover in ${linkSeconds} s at ${linkLoss}% loss; takeover at 0.5% loss loses nothing`, async () => {
    const p = (pair = new LabPair());
    await p.startStorage();
    const a = await p.start("A", "primary", "a", ["--image", "linux", "--disk", p.nbd]);
    relay = new DelayRelay({ listenHost: p.lab.relayIp, localAddress: p.lab.relayIp, targetHost: a.host, targetPort: a.port, delayMs: 10, jitterMs: 2, seed: 7 });
    const relayPort = await relay.listen();
    const b = await p.start("B", "backup", "b", ["--connect", `ws://${p.lab.relayIp}:${relayPort}`]);
    p.startPolling();
    await p.startWriter();
    await until(async () => (await a.status()).protected === true, 90_000, () => `B to protect A: ${b.stderr.slice(-1500)}`);
    const epoch = (await a.status()).epoch;
    p.lab.loss("a", linkLoss);
    p.lab.loss("b", linkLoss);
    const t0 = performance.now();
    const atStart = p.durable().at(-1) ?? 0;
    let unprotectedPolls = 0;
    while (performance.now() - t0 < linkSeconds * 1000) {
      await new Promise((r) => setTimeout(r, 500));
      // a node that stopped answering has exited (halted after a false failover, or crashed): say which, with both logs
      const s = await a.status().catch((e: Error) => {
        throw new Error(`A stopped answering at ${Math.round((performance.now() - t0) / 1000)} s (${e.message}); A exited ${a.child.exitCode}\nA: ${a.stderr.slice(-2500)}\nB: ${b.stderr.slice(-2500)}`);
      });
      expect([s.role, s.epoch], `A at ${Math.round((performance.now() - t0) / 1000)} s: ${a.stderr.slice(-1500)}`).toEqual(["primary", epoch]);
      if (s.protected !== true) unprotectedPolls++;
    }
    expect(unprotectedPolls).toBe(0);
    // the logging channel itself lost packets (it crosses the relay), not only the disk and arbiter traffic
    const dropped = p.lab.lossDrops("a", "relay") + p.lab.lossDrops("b", "relay");
    console.log(`${linkSeconds} s at ${linkLoss}% loss: ${dropped} packets of the logging channel dropped (${p.lab.lossDrops("a", "direct") + p.lab.lossDrops("b", "direct")} of disk and arbiter traffic), no false failover`);
    expect(dropped).toBeGreaterThan(0);
    const [sa, sb] = [await a.status(), await b.status()];
    const beats = (s: typeof sa) => s.beats as { sent: number; received: number; refused: number; stale: number };
    const channel = (s: typeof sa) => s.channel as { stallsRiddenOut: number; longestSilenceMs: number; longestOwnStallMs: number };
    console.log(`heartbeat datagrams: A sent ${beats(sa).sent}, received ${beats(sa).received}; B sent ${beats(sb).sent}, received ${beats(sb).received}; older than one already heard (reordered by the relay's jitter): A ${beats(sa).stale}, B ${beats(sb).stale}; logging channel: longest silence A ${channel(sa).longestSilenceMs} ms, B ${channel(sb).longestSilenceMs} ms; stalls past the failure timeout ridden out: A ${channel(sa).stallsRiddenOut}, B ${channel(sb).stallsRiddenOut}; each node's own longest stall: A ${channel(sa).longestOwnStallMs} ms, B ${channel(sb).longestOwnStallMs} ms`);
    // both ways through the relay, authenticated
    expect(beats(sa).received).toBeGreaterThan(linkSeconds * 10);
    expect(beats(sb).received).toBeGreaterThan(linkSeconds * 10);
    // none refused (a bad MAC, another version): a beat the jitter put behind a newer one is only stale
    expect(beats(sa).refused + beats(sb).refused).toBe(0);
    expect(sb.role).toBe("backup");
    const before = p.durable().at(-1) ?? 0;
    expect(before).toBeGreaterThan(atStart); // the guest went on writing through the lossy stretch (not a rate: a busy host runs it slower)
    p.lab.loss("a", 0.5);
    p.lab.loss("b", 0.5);
    await p.recordsAfter(3, "records at 0.5% loss");
    const killedAt = performance.now();
    a.kill("SIGKILL");
    const live = await b.waitEvent("live", 20_000);
    const takeoverMs = Math.round(performance.now() - killedAt);
    console.log(`kill to live on a 20 ms round trip with 0.5% loss: ${takeoverMs} ms (epoch ${String(live.epoch)})`);
    await p.recordsAfter(5, "records after the takeover");
    const { fsck } = await p.finishDisk();
    expect(p.doubleLive()).toEqual([]);
    expect(p.gaps).toEqual([]);
    expect(p.contradictions).toEqual([]);
    const seen = p.durable();
    seen.forEach((n, i) => expect(n, `durable line ${i}`).toBe(i + 1));
    expect(fsck.status, fsck.output).toBe(0);
  }, 300_000 + linkSeconds * 1000);
});
