// The file arbiter: exactly one claimant of an epoch wins, also when many race; a claimant that won
// and asks again (its first answer was lost) still wins instead of concluding it lost (before, both
// sides then halted); an unreachable or hung directory answers "unreachable", never blocks.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { FileArbiter } from "../../ft/arbiter/file-arbiter.js";

const dirs: string[] = [];
const dir = () => {
  const d = mkdtempSync(join(tmpdir(), "lockstep-arbiter-"));
  dirs.push(d);
  return d;
};
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("FileArbiter", () => {
  it("one winner among 20 racing claimants, and the directory says who", async () => {
    const a = new FileArbiter(dir());
    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => a.claim(1, `node-${i}`)));
    expect(answers.filter((x) => x === true)).toHaveLength(1);
    expect(answers.filter((x) => x === false)).toHaveLength(19);
    expect(await a.owner(1)).toBe(`node-${answers.indexOf(true)}`);
    expect(await a.current()).toBe(1);
    expect(readdirSync(a.dir)).toEqual(["epoch-1"]); // no private files left behind
  });

  it("a winner that asks again still wins; everybody else still loses", async () => {
    const a = new FileArbiter(dir());
    expect(await a.claim(3, "A")).toBe(true);
    expect(await a.claim(3, "A")).toBe(true);
    expect(await a.claim(3, "B")).toBe(false);
    expect(await a.claim(4, "B")).toBe(true);
    expect(await a.current()).toBe(4);
  });

  it("a directory that is not there is unreachable, not a loss", async () => {
    const a = new FileArbiter(join(dir(), "missing"));
    expect(await a.claim(1, "A")).toBeUndefined();
    expect(await a.current()).toBeUndefined();
  });

  it("an answer that does not come in time is 'unreachable' (a hung mount never blocks the node)", async () => {
    const d = dir();
    // epoch-1 is a named pipe: reading it hangs like a dead NFS server
    const fifo = join(d, "epoch-1");
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0);
    const a = new FileArbiter(d, 200);
    const t0 = performance.now();
    let ticks = 0;
    const ticker = setInterval(() => ticks++, 10);
    expect(await a.claim(1, "A")).toBeUndefined();
    clearInterval(ticker);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(190);
    expect(ticks).toBeGreaterThan(5); // the event loop went on meanwhile
    writeFileSync(fifo, ""); // let the hung read go
  });
});

describe("FileArbiter identity and announcements", () => {
  it("gives every user of one directory the same identity, another directory another; lists the nodes announced", async () => {
    const [d1, d2] = [0, 1].map(() => mkdtempSync(join(tmpdir(), "lockstep-arbiter-id-")));
    try {
      const ids = await Promise.all([new FileArbiter(d1!).identity(), new FileArbiter(d1!).identity(), new FileArbiter(d2!).identity()]);
      expect(ids[0]).toMatch(/^[0-9a-f-]{36}$/);
      expect(ids[1]).toBe(ids[0]);
      expect(ids[2]).not.toBe(ids[0]);
      const a = new FileArbiter(d1!);
      await a.announce("A", "http://127.0.0.1:7101");
      await a.announce("B", "http://127.0.0.1:7102");
      await a.announce("A", "http://127.0.0.1:7201"); // restarted elsewhere
      expect((await a.announced()).sort((x, y) => x.nodeId.localeCompare(y.nodeId))).toEqual([
        { nodeId: "A", url: "http://127.0.0.1:7201" },
        { nodeId: "B", url: "http://127.0.0.1:7102" },
      ]);
    } finally {
      for (const d of [d1, d2]) rmSync(d!, { recursive: true, force: true });
    }
  });
});
