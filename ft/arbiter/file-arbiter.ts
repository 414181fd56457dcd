/**
 * FileArbiter: the default arbiter, a directory both hosts share. Claiming epoch N creates the file
 * `epoch-N` with O_CREAT|O_EXCL, which exactly one creator can do (atomic on local filesystems and on
 * NFSv3+). The file holds the winner's node id and the time, for people reading the directory.
 */
import { readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import type { Arbiter } from "./arbiter.js";

export class FileArbiter implements Arbiter {
  constructor(readonly dir: string) {}

  async claim(epoch: number, nodeId: string): Promise<boolean | undefined> {
    try {
      writeFileSync(join(this.dir, `epoch-${epoch}`), JSON.stringify({ nodeId, at: new Date().toISOString() }) + "\n", { flag: "wx" });
      return true;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "EEXIST") return false;
      return undefined;
    }
  }

  async current(): Promise<number | undefined> {
    try {
      let max = 0;
      for (const name of readdirSync(this.dir)) {
        const m = /^epoch-(\d+)$/.exec(name);
        if (m) max = Math.max(max, Number(m[1]));
      }
      return max;
    } catch {
      return undefined;
    }
  }
}
