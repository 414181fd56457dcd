#!/usr/bin/env node
/**
 * The `lockstep` command line. Every operating error ends with one line `CODE: message (hint)` on
 * stderr and exit status 2; anything else is a bug and keeps its stack trace (exit status 1).
 */
import { Command, InvalidArgumentError } from "commander";
import { isLockstepError } from "../../emulator/lockstep-error.js";
import { setLogLevel } from "../logger.js";
import { imagesCommand } from "./images-command.js";
import { runCommand } from "./run-command.js";

const positiveInt = (what: string) => (value: string) => {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`${what} must be a positive integer.`);
  return n;
};

export function buildProgram(): Command {
  const program = new Command("lockstep")
    .description("An x86 virtual machine (v86) that survives the death of its host.")
    .option("--log-level <level>", "pino log level (trace, debug, info, warn, error, silent)", "info")
    .hook("preAction", (cmd) => setLogLevel(cmd.opts().logLevel as string))
    .showHelpAfterError();

  program
    .command("run")
    .description("boot a guest headless with the terminal on its serial console (Ctrl-] quits)")
    .option("--image <name|config.json>", "bundled image name or machine config file", "linux")
    .option("--memory <MiB>", "guest memory (overrides the config)", positiveInt("--memory"))
    .option("--disk <file>", "disk image to attach and write back at exit (default: a fresh disk, discarded)")
    .option("--no-jit", "interpret only (slower; deterministic either way)")
    .action(async (opts) => runCommand({ image: opts.image, memory: opts.memory, disk: opts.disk, jit: opts.jit }));

  program
    .command("images")
    .description("list the bundled guests")
    .option("--json", "machine-readable output")
    .action((opts) => imagesCommand(Boolean(opts.json)));

  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    await buildProgram().parseAsync(argv);
    return 0;
  } catch (e) {
    if (isLockstepError(e)) {
      process.stderr.write(`lockstep: ${e.toLine()}\n`);
      return 2;
    }
    throw e;
  }
}

main(process.argv).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`lockstep: internal error: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
