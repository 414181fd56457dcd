#!/usr/bin/env node
/**
 * The `lockstep` command line. Every operating error ends with one line `CODE: message (hint)` on
 * stderr and exit status 2; anything else is a bug and keeps its stack trace (exit status 1).
 */
import { resolve as resolvePath } from "node:path";
import { Command, InvalidArgumentError, Option } from "commander";
import { parseArbiterSpec } from "../arbiter/open-arbiter.js";
import { wasmTiers } from "../../emulator/wasm-tier.js";
import { ErrorCode, isLockstepError, LockstepError } from "../../emulator/lockstep-error.js";
import { digestEverySlicesMax } from "../../hypervisor/log-file.js";
import { setLogLevel } from "../logger.js";
import { parseNetSpec } from "../runtime/net-spec.js";
import { debugCommand, gdbCommand } from "./debug-command.js";
import { imagesCommand } from "./images-command.js";
import { logDumpCommand } from "./log-dump-command.js";
import { logPcapCommand } from "./log-pcap-command.js";
import { backupCommand, consoleCommand, primaryCommand, standbyCommand, statusCommand } from "./node-commands.js";
import { demoCommand } from "./demo-command.js";
import { recordCommand } from "./record-command.js";
import { replayCommand } from "./replay-command.js";
import { runCommand } from "./run-command.js";
import { applyBootFlags, bootFlags } from "./boot-options.js";

const integerAtLeast = (least: number, kind: string) => (what: string) => (value: string) => {
  const n = Number(value);
  if (value.trim() === "" || !Number.isInteger(n) || n < least) throw new InvalidArgumentError(`${what} must be a ${kind} integer.`);
  return n;
};
const positiveInt = integerAtLeast(1, "positive");
const nonNegativeInt = integerAtLeast(0, "non-negative");
const netHelp = "the guest's network: none (a card with no cable), user[:HOSTPORT=GUESTPORT,...] (passt, no root; forwards host loopback ports to the guest), passt:SOCKET (a passt you started) or tap:NAME (a TAP device, through socat)";
const netOption = (fallback: string) => new Option("--net <mode>", netHelp).argParser(parseNetSpec).default(parseNetSpec(fallback), fallback);

function parsePortOption(text: string): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n > 65535) throw new InvalidArgumentError("a port number, 0 to 65535 (0: any free port)");
  return n;
}

export function buildProgram(): Command {
  const program = new Command("lockstep")
    .description("An x86 virtual machine (v86) that survives the death of its host.")
    .option("--log-level <level>", "pino log level (trace, debug, info, warn, error, silent)", process.env.LOCKSTEP_LOG_LEVEL ?? "info")
    .addOption(
      new Option("--wasm-tier <tier>", "V8 compiler for the emulator's wasm: baseline (Liftoff only, faster for v86 on the hosts measured) or optimizing (V8's default tier-up)")
        .choices(wasmTiers)
        .default("baseline")
        .env("LOCKSTEP_WASM_TIER"),
    )
    .hook("preAction", (cmd) => {
      setLogLevel(cmd.opts().logLevel as string);
      // machine threads and node processes started from here inherit it
      process.env.LOCKSTEP_WASM_TIER = cmd.opts().wasmTier as string;
    })
    .showHelpAfterError();

  bootFlags(program
    .command("run"))
    .description("boot a guest headless with the terminal on its serial console (Ctrl-] quits)")
    .option("--image <name|config.json>", "bundled image name or machine config file", "linux")
    .option("--memory <MiB>", "guest memory (overrides the config)", positiveInt("--memory"))
    .option("--disk <file>", "disk image to attach and write back at exit (default: a fresh disk, discarded)")
    .option("--no-jit", "interpret only (slower; deterministic either way)")
    .option("--screen", "show the guest's VGA text screen (80x25, colours) instead of its serial port; keys go to its keyboard")
    .addOption(netOption("none"))
    .action(async (opts, cmd: Command) => {
      applyBootFlags(opts, cmd.getOptionValueSource("image") === "cli");
      await runCommand({ image: opts.image, memory: opts.memory, disk: opts.disk, jit: opts.jit, net: opts.net, screen: Boolean(opts.screen) });
    });

  bootFlags(program
    .command("record"))
    .description("run a guest live and record every non-deterministic input to a log file")
    .requiredOption("--out <file.lslog>", "the log file to write")
    .option("--image <name|config.json>", "bundled image name or machine config file", "linux")
    .option("--memory <MiB>", "guest memory (overrides the config)", positiveInt("--memory"))
    .option("--disk <file>", "disk image to start from (default: a fresh disk)")
    .option("--write-back", "write the disk back to --disk at the end (replay needs no disk: the log carries every read)")
    .option("--input <script>", "drive the console from a script (wait/send/sendline/keys/sleep) instead of the terminal")
    .option("--fast", "do not pace to wall time: run as fast as possible and skip idle time")
    .option(
      "--digest-every <slices>",
      `log a state digest every N slices (at most ${digestEverySlicesMax}: no two entries of a log are further apart)`,
      (v) => {
        const n = positiveInt("--digest-every")(v);
        if (n > digestEverySlicesMax) throw new InvalidArgumentError(`--digest-every must be at most ${digestEverySlicesMax}.`);
        return n;
      },
      1000,
    )
    .option("--checkpoint-every <slices>", "also write a checkpoint every N slices next to the log (for replay --from)", positiveInt("--checkpoint-every"))
    .option("--seed <n>", "seed of the guest's random generator (default: random)", (v) => positiveInt("--seed")(v))
    .option("--force", "overwrite an existing log file")
    .option("--no-jit", "interpret only")
    .addOption(netOption("none"))
    .action(async (opts, cmd: Command) =>
      recordCommand({
        ...applyBootFlags(opts, cmd.getOptionValueSource("image") === "cli"),
        net: opts.net,
        image: opts.image,
        memory: opts.memory,
        disk: opts.disk,
        out: opts.out,
        input: opts.input,
        force: Boolean(opts.force),
        fast: Boolean(opts.fast),
        digestEvery: opts.digestEvery,
        checkpointEvery: opts.checkpointEvery ?? 0,
        seed: opts.seed,
        writeBack: Boolean(opts.writeBack),
        jit: opts.jit,
      }),
    );

  program
    .command("replay")
    .description("re-execute a log offline, verifying every digest, and print the serial output it reproduces")
    .argument("<file.lslog>", "the log to replay")
    .option("--image <name|config.json>", "machine config (default: the bundled image the log names)")
    .option("--cdrom <iso>", "the CD image the recording booted (checked by its sha256)")
    .option("--memory <MiB>", "guest memory, when it differs from the config's", positiveInt("--memory"))
    .option("--disk <file>", "compare this disk with what the replayed guest wrote (every written sector must match); replay itself needs no disk")
    .option("--until <slice>", "stop at this slice", (v) => positiveInt("--until")(v))
    .option("--from <slice>", "start at the recording's nearest checkpoint at or before this slice (see record --checkpoint-every)", (v) => positiveInt("--from")(v))
    .option(
      "--allow-truncated",
      "replay a log that ends without power-off (a recording still being written, or whose recorder was killed) up to its last whole frame; without it such a log is refused (LOCKSTEP_ERR_LOG_TRUNCATED, exit status 2)",
    )
    .option("--json", "print a JSON summary (slices, instructions, digests checked, wall time) instead of the output")
    .option("--no-output", "do not print the guest's serial output")
    .action(async (file, opts) =>
      replayCommand({
        file,
        image: opts.cdrom ? `cdrom:${resolvePath(opts.cdrom)}` : opts.image,
        memory: opts.memory,
        disk: opts.disk,
        until: opts.until,
        from: opts.from,
        json: Boolean(opts.json),
        allowTruncated: Boolean(opts.allowTruncated),
        output: opts.output,
      }),
    );

  program
    .command("log")
    .description("inspect log files")
    .command("dump")
    .description("print the header and one line per entry")
    .argument("<file.lslog>", "the log to dump")
    .option("--allow-truncated", "stop at the last whole frame of a log cut short")
    .action((file, opts) => logDumpCommand(file, Boolean(opts.allowTruncated)));
  program
    .commands.find((c) => c.name() === "log")!
    .command("pcap")
    .description("write the network frames of a recording, in and out (replayed), as a pcap to standard output")
    .argument("<file.lslog>", "the log")
    .option("--image <name|config.json>", "machine config (default: the bundled image the log names)")
    .option("--cdrom <iso>", "the CD image the recording booted (checked by its sha256)")
    .option("--allow-truncated", "capture what a log cut short holds")
    .action(async (file, opts) => logPcapCommand(file, { allowTruncated: Boolean(opts.allowTruncated), image: opts.cdrom ? `cdrom:${resolvePath(opts.cdrom)}` : opts.image }));

  const nodeFlags = (c: Command, defaultListen: string) =>
    c
      .option("--listen <host:port>", "address for the peer, console and status endpoints (loopback unless told otherwise)", defaultListen)
      .option("--shared-dir <dir>", "directory both hosts share: the file arbiter's epochs (unless --arbiter says otherwise), the default disk, passt's socket")
      .addOption(new Option("--arbiter <spec>", "the arbiter both nodes ask before going live: file:DIR (a shared directory) or etcd://HOST[:PORT][,...]/PREFIX (default: file:<shared-dir>)").argParser(parseArbiterSpec))
      .option("--token <token>", "console credential: what `lockstep console` must show (default: $LOCKSTEP_TOKEN)")
      .option("--peer-token <token>", "peer credential, the same on both nodes and not the console's: what the backup shows on the logging channel (default: $LOCKSTEP_PEER_TOKEN)")
      .option("--tls-cert <file>", "serve HTTPS/WSS with this certificate (PEM; with --tls-key)")
      .option("--tls-key <file>", "the certificate's private key (PEM)")
      .option("--tls-ca <file>", "certificates to trust for a wss:// primary (PEM; default: the system's)")
      .option("--heartbeat-ms <ms>", "heartbeat interval", positiveInt("--heartbeat-ms"), 50)
      .option("--failure-timeout-ms <ms>", "silence (on the logging channel and of the heartbeat datagrams) after which the peer is declared failed", positiveInt("--failure-timeout-ms"), 400)
      .option("--channel-timeout-ms <ms>", "silence of the logging channel tolerated while the peer's heartbeat datagrams (UDP, same port) still arrive: a stalled TCP connection on a lossy link, not a dead peer", positiveInt("--channel-timeout-ms"), 5000)
      .option("--node-id <id>", "name of this node in logs and the arbiter")
      .option("--power-on-log-mib <MiB>", "keep the log whole from power-on until it is this large: a backup attaching before then replays it, one attaching later joins from a checkpoint (0: always a checkpoint)", nonNegativeInt("--power-on-log-mib"), 16)
      .addOption(netOption("none").default(parseNetSpec("none"), "none; user mode keeps passt's socket in --shared-dir, where a new primary finds it"));

  nodeFlags(bootFlags(program.command("primary").description("run a guest as the primary of a lockstep pair")), "127.0.0.1:7101")
    .option("--image <name|config.json>", "bundled image name or machine config file", "linux")
    .option("--memory <MiB>", "guest memory (overrides the config)", positiveInt("--memory"))
    .option("--disk <file|nbd-url>", "the shared disk: a file, or nbd://host:port/export (default: <shared-dir>/disk-<image>.img, made fresh when missing)")
    .action(async (o, cmd: Command) => primaryCommand(applyBootFlags(o, cmd.getOptionValueSource("image") === "cli")));

  nodeFlags(program.command("backup").description("follow a primary in lockstep and take over when it dies"), "127.0.0.1:7102")
    .requiredOption("--connect <ws://host:port>", "the primary's address")
    .option("--image <config.json>", "machine config, if the primary's machine is not a bundled image")
    .option("--disk <file|nbd-url>", "the shared disk, opened only at takeover (default: the location the primary uses)")
    .option("--join", "start from a checkpoint of the running primary (FT VMotion) instead of replaying its log from power-on")
    .option("--cdrom <iso>", "the CD image the primary boots (--cdrom there): the same file, checked by its sha256")
    .action(async (o) => backupCommand(o.cdrom ? { ...o, image: `cdrom:${resolvePath(o.cdrom)}` } : o));

  nodeFlags(program.command("standby").description("a spare host for a pair (--arbiter etcd://...): when its primary runs unprotected, one standby joins it as the backup"), "127.0.0.1:7103")
    .option("--image <config.json>", "machine config, if the primary's machine is not a bundled image")
    .option("--disk <file|nbd-url>", "the shared disk, opened only at takeover (default: the location the primary uses)")
    .option("--cdrom <iso>", "the CD image the primary boots (--cdrom there): the same file, checked by its sha256")
    .action(async (o) => standbyCommand(o.cdrom ? { ...o, image: `cdrom:${resolvePath(o.cdrom)}` } : o));

  program
    .command("console")
    .description("attach the terminal to the guest's console, following whichever node is live (Ctrl-] quits)")
    .argument("<url...>", "node addresses, e.g. ws://127.0.0.1:7101 ws://127.0.0.1:7102")
    .option("--token <token>", "console credential (default: $LOCKSTEP_TOKEN)")
    .option("--tls-ca <file>", "certificates to trust for wss:// nodes (PEM; default: the system's)")
    .option("--screen", "show the guest's VGA text screen (of the live node) instead of its serial console; keys go to its keyboard, exactly once")
    .action(async (urls: string[], o) => consoleCommand(urls, o.token, o.tlsCa, Boolean(o.screen)));

  program
    .command("debug")
    .description("debug a recording: show the machine at a slice boundary (--at), or serve gdb on a replay that steps and runs forwards and backwards (--gdb)")
    .argument("<file.lslog>", "the recording")
    .option("--at <slice>", "the slice boundary to stop at (slices completed); with --gdb, where gdb starts", (v) => nonNegativeInt("--at")(v))
    .option("--gdb <[host:]port>", "serve the gdb remote protocol (i386) here: `target remote HOST:PORT`, then stepi, continue, reverse-stepi, reverse-continue")
    .option("--memory <addr[:len]>", "guest memory to show, at a virtual address (0x... or decimal; length default 64); repeatable", (v: string, all: string[]) => [...all, v], [] as string[])
    .option("--image <name|config.json>", "machine config (default: the bundled image the recording names)")
    .option("--cdrom <iso>", "the CD image the recording booted (checked by its sha256)")
    .option("--json", "machine-readable output")
    .action(async (file, opts) => {
      const image = opts.cdrom ? { image: `cdrom:${resolvePath(opts.cdrom)}` } : opts.image ? { image: opts.image as string } : {};
      if (opts.at === undefined && opts.gdb === undefined) throw new LockstepError(ErrorCode.usage, "lockstep debug needs --at SLICE, --gdb [HOST:]PORT, or both", "--at alone prints the machine at a boundary; --gdb serves gdb, from --at's boundary if given");
      if (opts.gdb !== undefined) return gdbCommand({ file, listen: opts.gdb as string, at: opts.at ?? 0, ...image });
      return debugCommand({ file, at: opts.at, memory: opts.memory, json: Boolean(opts.json), ...image });
    });

  program
    .command("status")
    .description("role, epoch, slice, lag, log and protection of each node")
    .argument("<url...>", "node addresses")
    .option("--json", "machine-readable output")
    .option("--tls-ca <file>", "certificates to trust for https:// nodes (PEM; default: the system's)")
    .action(async (urls: string[], o) => statusCommand(urls, Boolean(o.json), o.tlsCa));

  program
    .command("demo")
    .description("a lockstep pair on this host with the console on this terminal and in a web view (its address is printed); Ctrl-] then k kills the primary")
    .option("--image <name|config.json>", "bundled image name or machine config file", "linux")
    .addOption(new Option("--net <mode>", `${netHelp} (default: user mode forwarding 127.0.0.1:8080, or a free port, to the guest's web server, if passt is installed)`).argParser(parseNetSpec))
    .option("--web", "the web view only: this terminal is not the guest's console (Ctrl-C stops the demo)")
    .option("--web-port <port>", "the web view's port on 127.0.0.1 (default 7080, or a free port)", parsePortOption)
    .option("--screen", "the terminal shows the live node's VGA text screen (e.g. --image vga), keys go to the guest's keyboard")
    .action(async (o) => {
      await demoCommand({ image: o.image, ...(o.net ? { net: o.net } : {}), webOnly: Boolean(o.web), screen: Boolean(o.screen), ...(o.webPort !== undefined ? { webPort: o.webPort } : {}) });
    });

  program
    .command("images")
    .description("list the bundled guests and what each boots from (or the configs and images named)")
    .argument("[image...]", "bundled names or config files to describe (default: every bundled image)")
    .option("--cdrom <iso>", "describe the machine that boots this ISO")
    .option("--json", "machine-readable output")
    .action((images: string[], opts) => imagesCommand(Boolean(opts.json), [...images, ...(opts.cdrom ? [`cdrom:${resolvePath(opts.cdrom)}`] : [])]));

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

// `lockstep log dump x | head`: a closed stdout ends the command quietly.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(0);
  throw e;
});

main(process.argv).then(
  (code) => {
    // a command may already have set a status of its own (a halted node exits 3)
    if (!process.exitCode) process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`lockstep: internal error: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
