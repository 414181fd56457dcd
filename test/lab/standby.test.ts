// Redundancy restored without a person: hosts a, b, c as network namespaces (s runs etcd and the NBD
// disk). A primary on a, its backup on b, two standbys on c. The backup's host dies (SIGKILL): one
// standby is chosen through etcd; it dies while joining, and the other one is chosen and joins, so
// the pair is protected again with nothing typed, and the two never joined at once. Then two
// standbys are started on b (the host came back) and the primary's host dies: the backup on c takes
// over and exactly one standby on b joins it (the other one is never chosen, although the join takes
// longer than a lease). The guest writes records to the disk all along: every record once and
// in order on the console, never two nodes live in an epoch, fsck clean. Prints the times from each
// kill to "protected" again. A standby registered for another guest is never chosen.
import { afterAll, describe, expect, it } from "vitest";
import type { NodeProcess } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";
import { LabPair } from "../../ft/testing/lab-pair.js";

let pair: LabPair | undefined;
afterAll(async () => {
  await pair?.stop();
});

describe("standbys (etcd)", () => {
  it("a dead backup is replaced by a standby, also when the chosen one dies joining; a dead primary's survivor gets one too", async () => {
    const p = (pair = new LabPair(["a", "b", "c", "s"]));
    await p.startStorage();
    const a = await p.start("A", "primary", "a", ["--image", "linux", "--disk", p.nbd]);
    const b = await p.start("B", "backup", "b", ["--connect", a.url]);
    const standbys = [await p.start("C1", "standby", "c", []), await p.start("C2", "standby", "c", [])];
    // a standby of another guest (another prefix on the same etcd) is never chosen for this one
    const foreign = await p.start("X", "standby", "c", ["--arbiter", `etcd://${p.etcd.endpoint}/another-guest`]);
    p.startPolling();
    const chosen = (n: NodeProcess) => n.events.some((e) => e.event === "chosen");
    await p.startWriter();
    await until(async () => (await a.status()).protected === true, 90_000, () => `B to protect A: ${b.stderr.slice(-1500)}`);
    await p.recordsAfter(3, "records while protected by B");
    expect(standbys.some(chosen)).toBe(false); // nobody is wanted while the pair is protected

    // the backup's host dies; the first standby chosen dies while joining
    const killedB = performance.now();
    b.kill("SIGKILL");
    await until(() => standbys.some(chosen), 30_000, () => `a standby to be chosen; A: ${a.stderr.slice(-1500)}`);
    const first = standbys.find(chosen)!;
    const second = standbys.find((n) => n !== first)!;
    first.kill("SIGKILL");
    const firstDiedAt = performance.now();
    expect(chosen(second)).toBe(false); // never two at once
    await until(async () => (await a.status()).protected === true && (await a.status()).backup === second.name, 60_000, () => `${second.name} to protect A: ${second.stderr.slice(-1500)}\nA: ${a.stderr.slice(-1500)}`);
    const chosenSecondAt = second.events.findIndex((e) => e.event === "chosen");
    expect(chosenSecondAt).toBeGreaterThanOrEqual(0);
    const backupKillToProtectedMs = Math.round(performance.now() - killedB);
    console.log(`backup killed -> protected by a standby (the first one chosen died joining): ${backupKillToProtectedMs} ms (the second waited ${Math.round(performance.now() - firstDiedAt)} ms after the first died)`);
    await p.recordsAfter(3, `records while protected by ${second.name}`);

    // b comes back with two standbys; the primary's host dies
    const onB = [await p.start("S-b1", "standby", "b", []), await p.start("S-b2", "standby", "b", [])];
    const killedA = performance.now();
    a.kill("SIGKILL");
    await second.waitEvent("live", 20_000);
    await until(async () => onB.some(chosen), 30_000, () => `a standby on b to be chosen; ${second.name}: ${second.stderr.slice(-1500)}`);
    const joiner = onB.find(chosen)!;
    const spare = onB.find((n) => n !== joiner)!;
    await until(async () => (await second.status()).protected === true && (await second.status()).backup === joiner.name, 60_000, () => `${joiner.name} to protect ${second.name}: ${joiner.stderr.slice(-1500)}\n${second.name}: ${second.stderr.slice(-1500)}`);
    const primaryKillToProtectedMs = Math.round(performance.now() - killedA);
    console.log(`primary killed -> its backup took over and a standby protects it: ${primaryKillToProtectedMs} ms`);
    await p.recordsAfter(3, "records after the second join");
    // all through a join that took longer than a lease, and after it, the other standby was never chosen
    expect(chosen(spare)).toBe(false);
    expect(spare.running).toBe(true);

    const { fsck } = await p.finishDisk();
    expect(chosen(foreign) || !foreign.running).toBe(false);
    expect(p.doubleLive()).toEqual([]);
    expect(p.gaps).toEqual([]);
    expect(p.contradictions).toEqual([]);
    p.durable().forEach((n, i) => expect(n, `durable line ${i}`).toBe(i + 1));
    expect(fsck.status, fsck.output).toBe(0);
  }, 600_000);
});
