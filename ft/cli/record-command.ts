/**
 * `lockstep record`: run a guest live (paced to wall time) and write every non-deterministic input
 * to a log file, interactively (the terminal is the console) or from an input script. The machine
 * runs on its own thread; this one writes the log, checkpoints and output, and types the input.
 */
import { randomInt } from "node:crypto";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { buildHeader, diskInfoOf } from "../../hypervisor/log-header.js";
import { saveCheckpoint } from "../../hypervisor/checkpoint-store.js";
import { LogWriter } from "../../hypervisor/log-file.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";
import { componentLogger, rootLogger } from "../logger.js";
import { requireNic, type NetSpec } from "../runtime/net-spec.js";
import { startNetLink } from "../runtime/open-net-link.js";
import { readInputScript, runInputScript } from "./input-script.js";
import { attachTerminal, escapeKeyName } from "./terminal-console.js";

export interface RecordOptions {
  image: string;
  memory?: number;
  disk?: string;
  out: string;
  input?: string;
  force: boolean;
  fast: boolean;
  digestEvery: number;
  /** Take a checkpoint every this many slices (0: never), kept next to the log. */
  checkpointEvery?: number;
  seed?: number;
  writeBack: boolean;
  jit: boolean;
  /** The host side of the guest's network card (default: none, a card with no cable). */
  net?: NetSpec;
}

/** How often the log file is flushed and the machine logs a progress marker (host ms). */
const flushIntervalMs = 100;

export async function recordCommand(options: RecordOptions): Promise<void> {
  const log = componentLogger("record");
  const script = options.input ? readInputScript(options.input) : undefined;
  const loaded = loadMachine(options.image, options.memory !== undefined ? { memoryMiB: options.memory } : {});
  requireNic(options.net, loaded.config);
  const freshDisk = !options.disk && loaded.config.disk ? loaded.config.disk : undefined;
  const disk = options.disk ? readDiskFile(options.disk) : freshDisk ? makeBlankDisk(freshDisk) : undefined;
  const clock = defaultClockParams(Date.now(), options.seed ?? randomInt(2 ** 31));
  const header = buildHeader({ loaded, disk: disk ? diskInfoOf(disk, freshDisk) : undefined, clock, digestEverySlices: options.digestEvery, recordedAt: new Date(), jit: options.jit });
  const writer = new LogWriter(options.out, header, { overwrite: options.force });
  let output = "";
  const checkpointWrites: Array<Promise<void>> = [];
  const decoder = new TextDecoder();
  let outputWaiters: Array<() => void> = [];
  const every = options.checkpointEvery ?? 0;
  let checkpointAsked = false;
  let lastCheckpoint = 0;
  let live: RecordingMachine | undefined;
  const link = startNetLink(options.net, rootLogger(), (frames) => live?.net(frames));
  const machine = await RecordingMachine.start({
    image: options.image,
    ...(options.memory !== undefined ? { load: { memoryMiB: options.memory } } : {}),
    clock,
    ...(options.fast ? {} : { wallEpochMs: clock.epochMs }),
    paced: !options.fast,
    digestEverySlices: options.digestEvery,
    jit: options.jit,
    ...(disk ? { disk } : {}),
    progressEveryMs: flushIntervalMs,
    onEntries: (entries) => {
      for (const e of entries) writer.append(e);
      const slice = entries.at(-1)!.slice;
      // the machine takes it at its next boundary without disk I/O in flight
      if (every > 0 && !checkpointAsked && slice - lastCheckpoint >= every) {
        checkpointAsked = true;
        machine.requestCheckpoint();
      }
    },
    onCheckpoint: (cp) => {
      checkpointAsked = false;
      lastCheckpoint = cp.driver.slice;
      checkpointWrites.push(saveCheckpoint(options.out, cp).then((bytes) => log.info({ slice: cp.driver.slice, bytes }, "checkpoint written")));
    },
    onOutput: (data) => {
      process.stdout.write(data);
      if (script) {
        output += decoder.decode(data, { stream: true });
        const w = outputWaiters;
        outputWaiters = [];
        for (const f of w) f();
      }
    },
    onNet: (n) => n.dir === "out" && link?.send(n.frames),
  }).catch(async (e: unknown) => {
    writer.close();
    await link?.close();
    throw e;
  });
  live = machine;
  const flushTimer = setInterval(() => writer.flush(), flushIntervalMs);
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= machine.stop());
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const terminal = script ? undefined : attachTerminal((bytes) => machine.type(bytes), () => void stop());
  log.info({ image: loaded.config.name, out: options.out, paced: !options.fast, seed: clock.seed }, script ? "recording an input script" : `recording; press ${escapeKeyName} to stop`);
  const started = performance.now();
  let scriptError: unknown;
  if (script) {
    runInputScript(
      script,
      {
        output: () => output,
        outputChanged: () => new Promise<void>((resolve) => {
          outputWaiters.push(resolve);
          setTimeout(resolve, 200);
        }),
        sendSerial: (d) => machine.type(d),
        sendKeys: (d) => machine.keys(d),
        sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
        nowMs: () => performance.now(),
      },
      options.input!,
    ).then(stop, (e) => {
      scriptError = e;
      void stop();
    });
  }
  try {
    await machine.ended();
    await stopped;
    await Promise.all(checkpointWrites);
  } finally {
    clearInterval(flushTimer);
    terminal?.close();
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    writer.close();
    await link?.close();
    if (options.writeBack && options.disk && disk) writeDiskFile(options.disk, disk);
  }
  const wallMs = performance.now() - started;
  log.info(
    {
      out: options.out,
      slices: machine.slice,
      instructions: machine.icount,
      entries: writer.entriesWritten,
      bytes: writer.bytesWritten,
      guestMs: Math.round(machine.guestMs),
      wallMs: Math.round(wallMs),
      ...(link ? { net: link.counters } : {}),
    },
    "recording complete",
  );
  if (scriptError) throw scriptError;
}
