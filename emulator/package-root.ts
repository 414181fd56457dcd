/**
 * Finds lockstep's package root (the folder holding package.json and disk-images/), whether this
 * module runs from source (emulator/*.ts under vitest or tsx) or compiled (dist/emulator/*.js).
 */
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

let cached: string | undefined;

export function packageRoot(): string {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      const pkg = JSON.parse(readFileSync(manifest, "utf8")) as { name?: string };
      if (pkg.name === "lockstep") return (cached = dir);
    }
    const parent = dirname(dir);
    if (parent === dir) throw new Error("lockstep package root not found above " + import.meta.url);
    dir = parent;
  }
}

export function bundledImagesDir(): string {
  return join(packageRoot(), "disk-images");
}
