/**
 * `lockstep run`: boot a guest headless with the terminal attached to its serial console. The
 * machine runs on its own thread under the recorder's rules (virtual clock paced to wall time); its
 * log is discarded.
 */
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";
import { componentLogger } from "../logger.js";
import { attachTerminal, escapeKeyName } from "./terminal-console.js";

export interface RunOptions {
  image: string;
  memory?: number;
  disk?: string;
  jit: boolean;
}

export async function runCommand(options: RunOptions): Promise<void> {
  const log = componentLogger("run");
  const loaded = loadMachine(options.image, options.memory !== undefined ? { memoryMiB: options.memory } : {});
  const disk = options.disk ? readDiskFile(options.disk) : loaded.config.disk ? makeBlankDisk(loaded.config.disk) : undefined;
  const clock = defaultClockParams(Date.now(), 0);
  let terminal: ReturnType<typeof attachTerminal> | undefined;
  const machine = await RecordingMachine.start({
    image: options.image,
    ...(options.memory !== undefined ? { load: { memoryMiB: options.memory } } : {}),
    clock,
    wallEpochMs: clock.epochMs,
    paced: true,
    digestEverySlices: 0,
    jit: options.jit,
    ...(disk ? { disk } : {}),
    onOutput: (data) => terminal?.write(data),
  });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= machine.stop());
  terminal = attachTerminal((bytes) => machine.type(bytes), () => void stop());
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  log.info(
    { image: loaded.config.name, memoryMiB: loaded.config.memoryMiB, disk: options.disk ?? (disk ? "fresh (discarded at exit)" : "none") },
    `booting; press ${escapeKeyName} to quit`,
  );
  try {
    await machine.ended();
    await stopped;
  } finally {
    terminal.close();
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    if (options.disk && disk) writeDiskFile(options.disk, disk);
  }
  log.info({ slices: machine.slice, instructions: machine.icount, disk: options.disk ?? null }, "stopped; disk flushed");
}
