/**
 * Two hosts for real (part of `npm run bench`; alone: `npm run bench:hosts`): nodes in network
 * namespaces (NetLab) with the etcd arbiter and the NBD disk on a third, the logging channel through
 * a relay that adds 0, 1 or 10 ms each way (the paper's pair sat on a 1–10 Gbit LAN: well under
 * 1 ms). Measured side by side in one run:
 *  - the linux shell loop on a primary alone vs with a live backup at each delay (throughput ratio),
 *    and the output-rule delay (from the primary's /status);
 *  - failover with the etcd arbiter: SIGKILL of a protected tiny primary -> first console byte from
 *    the new primary (BENCH_HOST_KILLS, default 5).
 * Needs root (namespaces), iproute2, nftables, etcd and nbdkit.
 */
import { fileURLToPath } from "node:url";
import type { NodeProcess } from "../ft/runtime/node-process.js";
import { until } from "../ft/runtime/until.js";
import { DelayRelay } from "../ft/testing/delay-relay.js";
import { LabPair } from "../ft/testing/lab-pair.js";
import { NetLab } from "../ft/testing/net-lab.js";
import { loop } from "./bench-ft.js";

type Status = Record<string, any>;

/** A primary on host a (and a backup on b through a relay adding `delayMs`, or none); its LabPair and the nodes. */
async function pairOnHosts(image: string, delayMs: number | undefined): Promise<{ p: LabPair; a: NodeProcess; b?: NodeProcess; relay?: DelayRelay }> {
  const p = new LabPair();
  await p.startStorage();
  const a = await p.start("A", "primary", "a", ["--image", image, "--disk", p.nbd]);
  if (delayMs === undefined) return { p, a };
  const relay = new DelayRelay({ listenHost: p.lab.relayIp, localAddress: p.lab.relayIp, targetHost: a.host, targetPort: a.port, delayMs, jitterMs: delayMs / 10 });
  const port = await relay.listen();
  const b = await p.start("B", "backup", "b", ["--connect", `ws://${p.lab.relayIp}:${port}`]);
  return { p, a, b, relay };
}

async function loopOnHosts(delayMs: number | undefined): Promise<{ seconds: number; status: Status }> {
  const { p, a, b, relay } = await pairOnHosts("linux", delayMs);
  try {
    p.startPolling();
    await until(() => /lockstep:\/root# /.test(p.out), 180_000, "the prompt");
    if (b) await until(async () => (await a.status()).protected === true, 90_000, "protection");
    const t0 = performance.now();
    p.client.send(Buffer.from(loop));
    await until(() => p.out.includes("loop-done\r\n"), 600_000, "the loop", 5);
    const seconds = (performance.now() - t0) / 1000;
    return { seconds, status: await a.status<Status>(10_000) };
  } finally {
    relay?.close();
    await p.stop();
  }
}

async function failoverOnHosts(): Promise<number> {
  const { p, a, b, relay } = await pairOnHosts("tiny", 0);
  try {
    await until(async () => (await a.status()).protected === true, 60_000, "protection");
    p.startPolling();
    await until(() => p.client.connectedTo !== undefined, 10_000, "the console");
    let killedAt: number | undefined;
    let firstByteMs: number | undefined;
    p.client.on("output", () => {
      if (killedAt !== undefined && firstByteMs === undefined && p.client.connectedTo === b!.url) firstByteMs = performance.now() - killedAt;
    });
    const pinger = setInterval(() => p.client.send(Buffer.from("ping\r")), 20);
    await new Promise((r) => setTimeout(r, 300 + Math.random() * 300));
    killedAt = performance.now();
    a.kill("SIGKILL");
    await until(() => firstByteMs !== undefined, 20_000, "output from the new primary");
    clearInterval(pinger);
    return firstByteMs!;
  } finally {
    relay?.close();
    await p.stop();
  }
}

export async function hostsBenchmarks(kills: number): Promise<string[]> {
  if (!NetLab.available()) return ["(two-host benchmarks skipped: they need root, iproute2 and nftables)"];
  process.stderr.write("  hosts: linux loop, primary alone ...\n");
  const alone = await loopOnHosts(undefined);
  const rows = ["| two hosts (namespaces, etcd, NBD) | loop alone / with backup | throughput ratio | output-rule delay p50 / p99 |", "|---|---|---|---|"];
  for (const delayMs of [0, 1, 10]) {
    process.stderr.write(`  hosts: linux loop with a backup, ${delayMs} ms each way ...\n`);
    const ft = await loopOnHosts(delayMs);
    const d = ft.status.outputDelayMs;
    rows.push(`| ${delayMs} ms one-way delay (${2 * delayMs} ms round trip) | ${alone.seconds.toFixed(2)} s / ${ft.seconds.toFixed(2)} s | ${(alone.seconds / ft.seconds).toFixed(2)} | ${d.p50} / ${d.p99} ms (n=${d.n}) |`);
  }
  const failovers: number[] = [];
  for (let i = 0; i < kills; i++) {
    failovers.push(await failoverOnHosts());
    process.stderr.write(`  hosts: failover ${i + 1}/${kills}: ${failovers.at(-1)!.toFixed(0)} ms\n`);
  }
  const sorted = [...failovers].sort((x, y) => x - y);
  return [...rows, "", "| two hosts: failover | value |", "|---|---|", `| etcd arbiter, SIGKILL -> first console byte from the new primary (${kills} kills) | p50 ${sorted[Math.floor(kills / 2)]!.toFixed(0)} ms, max ${sorted.at(-1)!.toFixed(0)} ms |`];
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  // exit (not die) on ^C, so that the namespaces made so far are removed
  for (const signal of ["SIGINT", "SIGTERM"] as const) process.once(signal, () => process.exit(130));
  const lines = await hostsBenchmarks(Number(process.env.BENCH_HOST_KILLS ?? 5));
  process.stdout.write(lines.join("\n") + "\n");
}
