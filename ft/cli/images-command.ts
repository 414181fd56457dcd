/** `lockstep images`: the bundled guests (or the configs and images named), what each boots from, sizes. */
import { statSync } from "node:fs";
import { basename, dirname, isAbsolute, join, resolve } from "node:path";
import { bundledImageNames, imageMachineConfig, readConfig, resolveConfigPath, type MachineConfig } from "../../emulator/machine-config.js";

/** What a machine boots from, in words. */
export function bootsFrom(config: MachineConfig): string {
  const file = (role: keyof MachineConfig["files"]) => basename(config.files[role]?.path ?? "?");
  switch (config.kind) {
    case "multiboot":
      return `multiboot kernel ${file("multiboot")}, no BIOS`;
    case "linux":
      return `SeaBIOS, kernel ${file("bzimage")}${config.files.initrd ? ` + initrd ${file("initrd")}` : ""}`;
    case "bios":
      if (config.boot === "cdrom") return `SeaBIOS from the CD ${file("cdrom")} (read-only)`;
      return `SeaBIOS from the hard disk (the shared disk)${config.files.cdrom ? `, the CD ${file("cdrom")} attached (read-only)` : ""}`;
  }
}

/** `names`: bundled names, config paths, or `cdrom:ISO` / `hda` / `hda+cdrom:ISO` (what --cdrom and --hda make); none: every bundled image. */
export function imagesCommand(json: boolean, names: string[] = []): void {
  const rows = (names.length > 0 ? names : bundledImageNames()).map((name) => {
    const synthesized = imageMachineConfig(name);
    const path = synthesized ? undefined : resolveConfigPath(name);
    const config = synthesized ?? readConfig(path!);
    let bytes = 0;
    for (const ref of Object.values(config.files)) bytes += statSync(isAbsolute(ref.path) || !path ? resolve(ref.path) : join(dirname(path), ref.path)).size;
    return { name: config.name, kind: config.kind, boots: bootsFrom(config), memoryMiB: config.memoryMiB, diskMiB: config.disk?.sizeMiB ?? 0, bytes, description: config.description };
  });
  if (json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    return;
  }
  const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
  for (const r of rows) {
    process.stdout.write(
      `${r.name.padEnd(8)} ${r.kind.padEnd(10)} files ${mib(r.bytes).padStart(9)}  memory ${String(r.memoryMiB).padStart(4)} MiB  disk ${String(r.diskMiB).padStart(3)} MiB  ${r.description}\n${"".padEnd(9)}boots: ${r.boots}\n`,
    );
  }
}
