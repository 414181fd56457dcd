#!/usr/bin/env node
// Rewrites the sha256 of every file named by disk-images/*/machine.json (run after build-images.sh).
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const images = join(dirname(fileURLToPath(import.meta.url)), "..", "disk-images");
for (const name of readdirSync(images)) {
  const path = join(images, name, "machine.json");
  if (!existsSync(path)) continue;
  const config = JSON.parse(readFileSync(path, "utf8"));
  for (const ref of Object.values(config.files)) {
    ref.sha256 = createHash("sha256").update(readFileSync(join(images, name, ref.path))).digest("hex");
  }
  writeFileSync(path, JSON.stringify(config, null, 2) + "\n");
  console.log(`${name}: ${Object.keys(config.files).join(", ")} hashed`);
}
