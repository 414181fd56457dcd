/**
 * `lockstep run`: boot a guest headless with the terminal attached to its serial console. The
 * machine runs on its own thread under the recorder's rules (virtual clock paced to wall time); its
 * log is discarded.
 */
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { scancodesForTerminal } from "../../emulator/scancodes.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";
import { componentLogger, rootLogger } from "../logger.js";
import { requireNic, type NetSpec } from "../runtime/net-spec.js";
import { startNetLink } from "../runtime/open-net-link.js";
import { showScreen } from "./screen-view.js";
import { attachTerminal, escapeKeyName } from "./terminal-console.js";

export interface RunOptions {
  image: string;
  memory?: number;
  disk?: string;
  jit: boolean;
  /** The host side of the guest's network card (default: none, a card with no cable). */
  net?: NetSpec;
  /** Show the guest's VGA text screen instead of its serial port; typed keys go to its keyboard. */
  screen?: boolean;
}

export async function runCommand(options: RunOptions): Promise<void> {
  const log = componentLogger("run");
  const loaded = loadMachine(options.image, options.memory !== undefined ? { memoryMiB: options.memory } : {});
  const disk = options.disk ? readDiskFile(options.disk) : loaded.config.disk ? makeBlankDisk(loaded.config.disk) : undefined;
  const clock = defaultClockParams(Date.now(), 0);
  let terminal: ReturnType<typeof attachTerminal> | undefined;
  let machine: RecordingMachine | undefined;
  requireNic(options.net, loaded.config);
  const link = startNetLink(options.net, rootLogger(), (frames) => machine?.net(frames));
  machine = await RecordingMachine.start({
    image: options.image,
    ...(options.memory !== undefined ? { load: { memoryMiB: options.memory } } : {}),
    clock,
    wallEpochMs: clock.epochMs,
    paced: true,
    digestEverySlices: 0,
    jit: options.jit,
    ...(disk ? { disk } : {}),
    onOutput: (data) => {
      if (!options.screen) terminal?.write(data);
    },
    onNet: (n) => n.dir === "out" && link?.send(n.frames),
  }).catch(async (e: unknown) => {
    await link?.close();
    throw e;
  });
  let stopped: Promise<void> | undefined;
  const running = machine;
  const stop = () => (stopped ??= running.stop());
  terminal = attachTerminal((bytes) => (options.screen ? running.keys(scancodesForTerminal(Buffer.from(bytes).toString("latin1"))) : running.type(bytes)), () => void stop());
  const shown = options.screen ? showScreen(() => running.screen(), (text) => terminal?.write(Buffer.from(text, "utf8"))) : undefined;
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);
  log.info(
    { image: loaded.config.name, memoryMiB: loaded.config.memoryMiB, disk: options.disk ?? (disk ? "fresh (discarded at exit)" : "none") },
    `booting; press ${escapeKeyName} to quit`,
  );
  try {
    await running.ended();
    await stopped;
  } finally {
    shown?.stop();
    terminal.close();
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    if (options.disk && disk) writeDiskFile(options.disk, disk);
    await link?.close();
  }
  log.info({ slices: running.slice, instructions: running.icount, disk: options.disk ?? null, ...(link ? { net: link.counters } : {}) }, "stopped; disk flushed");
}
