/**
 * `lockstep record`: run a guest live (paced to wall time) and write every non-deterministic input
 * to a log file, interactively (the terminal is the console) or from an input script.
 */
import { randomInt } from "node:crypto";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import { readDiskFile, writeDiskFile } from "../../emulator/disk-file.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { LiveLoop } from "../../hypervisor/live-loop.js";
import { MemoryDiskPort } from "../../hypervisor/disk/disk-port.js";
import { buildHeader, diskInfoOf } from "../../hypervisor/log-header.js";
import { saveCheckpoint } from "../../hypervisor/checkpoint-store.js";
import { LogWriter } from "../../hypervisor/log-file.js";
import { defaultClockParams, MachineSession } from "../../hypervisor/machine-session.js";
import { Recorder } from "../../hypervisor/recorder.js";
import { componentLogger } from "../logger.js";
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
}

/** How often the log file is flushed with a progress marker (host ms). */
const flushIntervalMs = 100;

export async function recordCommand(options: RecordOptions): Promise<void> {
  const log = componentLogger("record");
  const script = options.input ? readInputScript(options.input) : undefined;
  const loaded = loadMachine(options.image, options.memory !== undefined ? { memoryMiB: options.memory } : {});
  const freshDisk = !options.disk && loaded.config.disk ? loaded.config.disk : undefined;
  const disk = options.disk ? readDiskFile(options.disk) : freshDisk ? makeBlankDisk(freshDisk) : undefined;
  const clock = defaultClockParams(Date.now(), options.seed ?? randomInt(2 ** 31));
  const header = buildHeader({ loaded, disk: disk ? diskInfoOf(disk, freshDisk) : undefined, clock, digestEverySlices: options.digestEvery, recordedAt: new Date() });
  const writer = new LogWriter(options.out, header, { overwrite: options.force });
  const session = await MachineSession.open({ loaded, ...(disk ? { diskBytes: disk.byteLength } : {}), clock, jit: options.jit });
  const recorder = new Recorder(session.driver, { digestEverySlices: options.digestEvery, sink: (e) => writer.append(e) });

  let output = "";
  let lastCheckpoint = 0;
  const checkpointWrites: Array<Promise<void>> = [];
  const decoder = new TextDecoder();
  let outputWaiters: Array<() => void> = [];
  const loop = new LiveLoop(recorder, {
    paced: !options.fast,
    ...(options.fast ? {} : { wallEpochMs: clock.epochMs }),
    ...(disk ? { disk: new MemoryDiskPort(disk, recorder) } : {}),
    onSlice: (result, slice) => {
      const every = options.checkpointEvery ?? 0;
      if (every > 0 && slice - lastCheckpoint >= every) {
        const cp = recorder.checkpoint(); // undefined while disk I/O is in flight: next boundary
        if (cp) {
          lastCheckpoint = slice;
          checkpointWrites.push(saveCheckpoint(options.out, cp).then((bytes) => log.info({ slice, bytes }, "checkpoint written")));
        }
      }
      if (!result.serial) return;
      process.stdout.write(result.serial);
      if (script) {
        output += decoder.decode(result.serial, { stream: true });
        const w = outputWaiters;
        outputWaiters = [];
        for (const f of w) f();
      }
    },
  });
  const flushTimer = setInterval(() => {
    recorder.progress();
    writer.flush();
  }, flushIntervalMs);
  const stop = () => loop.stop();
  process.once("SIGINT", stop);
  process.once("SIGTERM", stop);

  const terminal = script
    ? undefined
    : attachTerminal(
        (bytes) => {
          recorder.queueSerial(bytes);
          loop.wake();
        },
        stop,
      );
  log.info({ image: loaded.config.name, out: options.out, paced: !options.fast, seed: clock.seed }, script ? "recording an input script" : `recording; press ${escapeKeyName} to stop`);
  const started = performance.now();
  const running = loop.run();
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
        sendSerial: (d) => {
          recorder.queueSerial(d);
          loop.wake();
        },
        sendKeys: (d) => {
          recorder.queueKeys(d);
          loop.wake();
        },
        sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
        nowMs: () => performance.now(),
      },
      options.input!,
    ).then(stop, (e) => {
      scriptError = e;
      stop();
    });
  }
  try {
    await running;
    await Promise.all(checkpointWrites);
  } finally {
    clearInterval(flushTimer);
    terminal?.close();
    process.off("SIGINT", stop);
    process.off("SIGTERM", stop);
    recorder.progress();
    writer.close();
    if (options.writeBack && options.disk && disk) writeDiskFile(options.disk, disk);
    session.close();
  }
  const wallMs = performance.now() - started;
  log.info(
    {
      out: options.out,
      slices: session.driver.slice,
      instructions: session.driver.icount,
      entries: writer.entriesWritten,
      bytes: writer.bytesWritten,
      guestMs: Math.round(session.clock.peekMs()),
      wallMs: Math.round(wallMs),
    },
    "recording complete",
  );
  if (scriptError) throw scriptError;
}
