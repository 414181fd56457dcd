/** `lockstep images`: the bundled guests, their sizes and what they are. */
import { statSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { bundledImageNames, readConfig, resolveConfigPath } from "../../emulator/machine-config.js";

export function imagesCommand(json: boolean): void {
  const rows = bundledImageNames().map((name) => {
    const path = resolveConfigPath(name);
    const config = readConfig(path);
    let bytes = 0;
    for (const ref of Object.values(config.files)) {
      bytes += statSync(isAbsolute(ref.path) ? ref.path : join(dirname(path), ref.path)).size;
    }
    return { name, kind: config.kind, memoryMiB: config.memoryMiB, diskMiB: config.disk?.sizeMiB ?? 0, bytes, description: config.description };
  });
  if (json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    return;
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  for (const r of rows) {
    process.stdout.write(
      `${r.name.padEnd(8)} ${r.kind.padEnd(10)} files ${mib(r.bytes).padStart(9)}  memory ${String(r.memoryMiB).padStart(4)} MiB  disk ${String(r.diskMiB).padStart(3)} MiB  ${r.description}\n`,
    );
  }
}
