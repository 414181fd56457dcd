/**
 * `lockstep run`: boot a guest headless with the terminal attached to its serial console. The
 * machine runs under the recorder's rules (virtual clock paced to wall time), logging nothing.
 */
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { LiveLoop } from "../../hypervisor/live-loop.js";
import { MemoryDiskPort } from "../../hypervisor/disk/disk-port.js";
import { defaultClockParams, MachineSession } from "../../hypervisor/machine-session.js";
import { Recorder } from "../../hypervisor/recorder.js";
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
  const session = await MachineSession.open({ loaded, ...(disk ? { diskBytes: disk.byteLength } : {}), clock, jit: options.jit });
  const recorder = new Recorder(session.driver, { digestEverySlices: 0, sink: () => {} });
  const terminal = attachTerminal(
    (bytes) => {
      recorder.queueSerial(bytes);
      loop.wake();
    },
    () => loop.stop(),
  );
  const loop = new LiveLoop(recorder, {
    paced: true,
    wallEpochMs: clock.epochMs,
    ...(disk ? { disk: new MemoryDiskPort(disk, recorder) } : {}),
    onSlice: (result) => {
      if (result.serial) terminal.write(result.serial);
    },
  });
  const stop = () => loop.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  log.info(
    { image: loaded.config.name, memoryMiB: loaded.config.memoryMiB, disk: options.disk ?? (disk ? "fresh (discarded at exit)" : "none") },
    `booting; press ${escapeKeyName} to quit`,
  );
  try {
    await loop.run();
  } finally {
    terminal.close();
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    if (options.disk && disk) writeDiskFile(options.disk, disk);
    session.close();
  }
  log.info({ slices: session.driver.slice, instructions: session.driver.icount, disk: options.disk ?? null }, "stopped; disk flushed");
}
