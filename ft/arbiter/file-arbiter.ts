/**
 * FileArbiter: the default arbiter, a directory both hosts share. Claiming epoch N makes the file
 * `epoch-N`, holding the winner's node id and the time, which exactly one claimant can do.
 *
 * The file is written under a private name first and then hard-linked to `epoch-N`: a link is
 * atomic and fails if the name exists, on local filesystems and on NFS, and the file is never seen
 * half-written. A claim whose answer was lost (an error after the link was made, a retry after a
 * timeout) is decided by what the directory says: the private file's link count, and the node id
 * in `epoch-N`. So a claimant that won never concludes it lost (both sides would then halt).
 *
 * Every call is asynchronous and bounded by `timeoutMs`: a hung mount answers "unreachable"
 * (undefined) and never stalls the node's event loop; the claim is asked again.
 *
 * The directory also holds `arbiter-id` (a random id made by the first node that used it: nodes of
 * one pair must show the same) and `node-<id>.json` (where each node listens).
 */
import { randomUUID } from "node:crypto";
import { link, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Arbiter } from "./arbiter.js";

/** Unreachable: no answer in time. */
const timedOut = Symbol("timed out");

export class FileArbiter implements Arbiter {
  constructor(
    readonly dir: string,
    private readonly timeoutMs = 2000,
  ) {}

  claim(epoch: number, nodeId: string): Promise<boolean | undefined> {
    return this.bounded(this.tryClaim(epoch, nodeId));
  }

  current(): Promise<number | undefined> {
    return this.bounded(
      readdir(this.dir).then(
        (names) => names.reduce((max, name) => Math.max(max, Number(/^epoch-(\d+)$/.exec(name)?.[1] ?? 0)), 0),
        () => undefined,
      ),
    );
  }

  identity(): Promise<string | undefined> {
    const file = join(this.dir, "arbiter-id");
    const read = () => readFile(file, "utf8").then((t) => t.trim() || undefined);
    return this.bounded(
      read().catch(async () => {
        // the first node here makes it (exactly one of two racing ones does)
        await writeFile(file, randomUUID() + "\n", { flag: "wx" }).catch(() => {});
        return read().catch(() => undefined);
      }),
    );
  }

  async announce(nodeId: string, url: string): Promise<void> {
    const file = join(this.dir, `node-${encodeURIComponent(nodeId)}.json`);
    const temp = `${file}.${randomUUID()}`;
    await this.bounded(writeFile(temp, JSON.stringify({ nodeId, url }) + "\n").then(() => rename(temp, file)));
  }

  async announced(): Promise<Array<{ nodeId: string; url: string }>> {
    const names = (await this.bounded(readdir(this.dir).catch(() => [] as string[]))) ?? [];
    const nodes: Array<{ nodeId: string; url: string }> = [];
    for (const name of names.filter((n) => /^node-.*\.json$/.test(n))) {
      const text = await this.bounded(readFile(join(this.dir, name), "utf8").catch(() => undefined));
      try {
        const v = JSON.parse(text ?? "") as { nodeId?: unknown; url?: unknown };
        if (typeof v.nodeId === "string" && typeof v.url === "string") nodes.push({ nodeId: v.nodeId, url: v.url });
      } catch {
        // half-made or foreign: not a node
      }
    }
    return nodes;
  }

  /** The node id that holds epoch `epoch`, null if nobody does, undefined if the directory cannot be read. */
  async owner(epoch: number): Promise<string | null | undefined> {
    try {
      const text = await readFile(join(this.dir, `epoch-${epoch}`), "utf8");
      const nodeId = (JSON.parse(text) as { nodeId?: unknown }).nodeId;
      return typeof nodeId === "string" ? nodeId : undefined;
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === "ENOENT" ? null : undefined;
    }
  }

  private async tryClaim(epoch: number, nodeId: string): Promise<boolean | undefined> {
    const mine = join(this.dir, `.claim-${epoch}-${randomUUID()}`);
    try {
      await writeFile(mine, JSON.stringify({ nodeId, at: new Date().toISOString() }) + "\n", { flag: "wx" });
    } catch {
      return undefined;
    }
    try {
      await link(mine, join(this.dir, `epoch-${epoch}`));
      return true;
    } catch (e) {
      // the link may have been made although it reported an error (NFS: a lost reply)
      if ((e as NodeJS.ErrnoException).code !== "EEXIST" && (await stat(mine).catch(() => undefined))?.nlink === 2) return true;
      const owner = await this.owner(epoch);
      return owner === null || owner === undefined ? undefined : owner === nodeId;
    } finally {
      await rm(mine, { force: true }).catch(() => {});
    }
  }

  private async bounded<T>(p: Promise<T>): Promise<T | undefined> {
    let timer: NodeJS.Timeout | undefined;
    const r = await Promise.race([p, new Promise<typeof timedOut>((resolve) => (timer = setTimeout(() => resolve(timedOut), this.timeoutMs)))]);
    clearTimeout(timer);
    return r === timedOut ? undefined : r;
  }
}
