/**
 * `lockstep demo` (npm start): a primary and a backup as separate processes on loopback, sharing an
 * arbiter directory, with this terminal as the guest's console and a web view (its address is
 * printed) with the same console, the nodes, their lag and a timeline, and buttons to kill the
 * primary, kill the backup and start a new backup. Ctrl-] then k kills the primary with SIGKILL;
 * the status line shows when the backup took over and when console output flowed again. After a
 * takeover a fresh backup process joins the new primary from a checkpoint (--join), so the pair is
 * protected again and the primary can be killed again. With `--web` the terminal is not the
 * console: the demo runs until Ctrl-C, driven from the page.
 *
 * The guest's network goes through passt (user mode), with a host port forwarded to the guest's web
 * server: its counter page keeps counting in a browser or a `curl` loop through every takeover.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { createServer } from "node:net";
import { closeSync, mkdtempSync, openSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleClient, type ConsoleContradiction, type ConsoleGap } from "../runtime/console-client.js";
import { freePort } from "../runtime/free-port.js";
import { describeNetSpec, stopPairPasst, type NetSpec } from "../runtime/net-spec.js";
import { NodeProcess, type NodeEvent, type NodeRole } from "../runtime/node-process.js";
import { scancodesForTerminal } from "../../emulator/scancodes.js";
import { nodeScreen, showScreen } from "./screen-view.js";
import { escapeByte } from "./terminal-console.js";
import { DemoWeb, type DemoEvent } from "../web/demo-web.js";

interface DemoNode {
  process: NodeProcess;
  /** The role it has now: a backup that took over is the primary. */
  role: NodeRole;
}

/** `port` if it is free on loopback (a port a person would expect), else any free one. */
async function preferredPort(port: number): Promise<number> {
  const free = await new Promise<boolean>((resolve) => {
    const s = createServer();
    s.once("error", () => resolve(false));
    s.listen(port, "127.0.0.1", () => s.close(() => resolve(true)));
  });
  return free ? port : freePort();
}

/** The demo's network: what was asked, or passt with a web port if passt is installed. */
async function demoNet(asked: NetSpec | undefined): Promise<NetSpec> {
  if (asked) return asked;
  if (spawnSync("passt", ["--version"], { stdio: "ignore" }).error) return { mode: "none" };
  return { mode: "user", forwards: [{ host: await preferredPort(8080), guest: 80 }] };
}

export interface DemoOptions {
  image: string;
  net?: NetSpec;
  /** The web view only: this terminal is not the guest's console. */
  webOnly?: boolean;
  /** The web view's port (default 7080 if free, else any). */
  webPort?: number;
  /** The terminal shows the live node's VGA text screen (keys go to the guest's keyboard), not its serial console. */
  screen?: boolean;
}

export async function demoCommand(options: DemoOptions): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-demo-"));
  const token = randomBytes(16).toString("hex");
  const peerToken = randomBytes(16).toString("hex");
  const logFile = join(dir, "nodes.log");
  const logFd = openSync(logFile, "a");
  const nodes: DemoNode[] = [];
  const names = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  let started = 0;
  const events: DemoEvent[] = [];
  // with the screen shown, the demo's newest message stays on the line below it (drawn again after
  // every redraw of the screen, which clears the rest of the terminal)
  let said = "";
  const sayBelowScreen = () => (said ? `\x1b7\x1b[27;1H\x1b[K\x1b[7m[lockstep demo] ${said}\x1b[0m\x1b8` : "");
  const say = (text: string, kind?: string) => {
    said = text;
    if (options.screen) process.stderr.write(sayBelowScreen());
    else process.stderr.write(`\r\n\x1b[7m[lockstep demo] ${text}\x1b[0m\r\n`);
    // the web view's timeline shows what the demo did (wall time, for people)
    if (kind) events.push({ seq: events.length + 1, atMs: Date.now(), kind, text });
    if (events.length > 200) events.shift();
  };
  let killedAt: number | undefined;
  let awaitingFirstByte = false;
  const net = await demoNet(options.net);
  const netArgs = ["--net", describeNetSpec(net)];

  // nodes still starting when the demo quits are killed too (one left running would outlive it)
  const quitting = new AbortController();
  const starts = new Set<Promise<NodeProcess>>();
  const startNode = async (role: NodeRole, how: { port?: number; connect?: string; join?: boolean } = {}): Promise<DemoNode> => {
    const name = names[started++ % names.length]!; // taken before the await: starts may overlap
    const args = role === "primary" ? ["--image", options.image, ...netArgs] : [...netArgs];
    if (how.connect) args.push("--connect", how.connect);
    if (how.join) args.push("--join");
    const start = NodeProcess.start({ role, name, sharedDir: dir, token, peerToken, args, stderr: logFd, signal: quitting.signal, ...(how.port !== undefined ? { port: how.port } : {}) });
    starts.add(start);
    const proc = await start.finally(() => starts.delete(start));
    const node: DemoNode = { process: proc, role };
    nodes.push(node);
    const onEvent = (ev: NodeEvent) => {
      if (ev.event === "live" && role === "backup") {
        node.role = "primary";
        const ms = killedAt !== undefined ? ` ${Math.round(performance.now() - killedAt)} ms after the kill` : "";
        say(`backup ${name} took over as primary (epoch ${ev.epoch})${ms}; starting a new backup`, "took-over");
        void startBackup();
      }
      if (ev.event === "halted") say(`node ${name} halted: ${ev.reason}`, "halted");
    };
    proc.on("event", onEvent);
    return node;
  };

  /** A new backup that joins the live primary from a checkpoint (one at a time: a primary takes one backup). */
  let starting = false;
  const startBackup = async (): Promise<string> => {
    const p = nodes.find((n) => n.process.running && n.role === "primary");
    if (!p) return "no live primary to join";
    const running = nodes.find((n) => n.process.running && n.role === "backup");
    if (running) return `backup ${running.process.name} is running: kill it first`;
    if (starting) return "a new backup is starting already";
    starting = true;
    try {
      const b = await startNode("backup", { connect: p.process.url, join: true });
      client.addUrl(b.process.url);
      const text = `started backup ${b.process.name} (pid ${b.process.pid}): it joins primary ${p.process.name} from a checkpoint`;
      say(text, "joined");
      return text;
    } catch (e) {
      if (quitting.signal.aborted) return "quitting";
      const text = `a new backup could not start: ${(e as Error).message.split("\n")[0]}`;
      say(text, "halted");
      return text;
    } finally {
      starting = false;
    }
  };

  // the backup starts beside the primary (it retries until the primary listens), so it is told the
  // primary's port in advance: it starts following sooner than if it waited for the primary to be up
  const primaryPort = await freePort();
  const [primary, backup] = await Promise.all([startNode("primary", { port: primaryPort }), startNode("backup", { connect: `ws://127.0.0.1:${primaryPort}` })]);
  const client = new ConsoleClient({ urls: [primary.process.url, backup.process.url], token });

  client.on("output", (b: Uint8Array) => {
    if (awaitingFirstByte && killedAt !== undefined) {
      awaitingFirstByte = false;
      say(`console output flowing again ${Math.round(performance.now() - killedAt)} ms after the kill (from ${client.connectedTo})`, "attached");
    }
    if (!options.webOnly && !options.screen) process.stdout.write(b);
  });
  const shown = options.screen && !options.webOnly ? showScreen(async () => (client.connectedTo ? nodeScreen(client.connectedTo, token) : undefined), (text) => process.stdout.write(text + sayBelowScreen())) : undefined;
  // what was typed, a chunk of the terminal's input at a time (a key's escape sequence stays whole)
  const typeBytes = (bytes: number[]) => {
    if (bytes.length === 0) return;
    if (options.screen) client.send(scancodesForTerminal(String.fromCharCode(...bytes)), true);
    else client.send(Uint8Array.from(bytes));
  };
  client.on("contradiction", (c: ConsoleContradiction) => say(`OUTPUT CONTRADICTION: ${c.url} resent different bytes at offset ${c.offset} than were shown`, "halted"));
  client.on("gap", (g: ConsoleGap) => say(`console output ${g.from}..${g.to} was held by no live node (this view was too far behind): skipped`));
  client.on("attached", (url: string, epoch: number) => {
    if (killedAt !== undefined) say(`console reattached to ${url} (epoch ${epoch}) ${Math.round(performance.now() - killedAt)} ms after the kill`);
  });

  // report protection changes of whichever node is primary
  let lastProtection = "";
  let killArmedAt: number | undefined;
  const poll = setInterval(async () => {
    const p = nodes.find((n) => n.process.running && n.role === "primary");
    if (!p) return;
    try {
      const s = await p.process.status<{ protected: boolean; backup: string | null; state: string; epoch: number }>(500);
      const now = s.protected ? `protected by ${s.backup}` : s.state === "joining" ? `backup ${s.backup} catching up` : "UNPROTECTED";
      if (now !== lastProtection) {
        lastProtection = now;
        say(`primary ${p.process.name} (epoch ${s.epoch}): ${now}`);
      }
    } catch {
      // the primary may just have died
    }
  }, 250);

  const killPrimary = (): string => {
    const p = nodes.find((n) => n.process.running && n.role === "primary");
    const armed = killArmedAt !== undefined && performance.now() - killArmedAt < 10_000;
    killArmedAt = undefined;
    if (!p) return say("no live primary"), "no live primary";
    if (!lastProtection.startsWith("protected") && !armed) {
      // no backup could take over now: the guest would be lost with its primary
      killArmedAt = performance.now();
      const text = `primary ${p.process.name} is not protected yet (${lastProtection || "no backup"}): killing it now loses the guest; kill again (within 10 s) to kill it anyway`;
      say(text);
      return text;
    }
    killedAt = performance.now();
    awaitingFirstByte = true;
    p.process.kill("SIGKILL");
    const text = `killed primary ${p.process.name} (pid ${p.process.pid}) with SIGKILL`;
    say(text, "peer-failed");
    return text;
  };
  const killBackup = (): string => {
    const b = nodes.find((n) => n.process.running && n.role === "backup");
    if (!b) return say("no live backup"), "no live backup";
    b.process.kill("SIGKILL");
    const text = `killed backup ${b.process.name} (pid ${b.process.pid}); the primary goes on unprotected`;
    say(text, "peer-failed");
    return text;
  };

  const view = new DemoWeb(
    {
      nodes: () => nodes.map((n) => ({ name: n.process.name, url: n.process.url.replace(/^ws/, "http"), running: n.process.running, pid: n.process.pid })),
      events: () => events,
      killPrimary,
      killBackup,
      startBackup,
    },
    token,
  );
  await view.listen(options.webPort ?? (await preferredPort(7080)));
  const web = net.mode === "user" ? net.forwards.find((f) => f.guest === 80) : undefined;
  say(`web view: ${view.signInUrl}`);
  if (web) say(`the guest's web page: http://127.0.0.1:${web.host}/ (a request counter; keep a browser or \`while curl -s 127.0.0.1:${web.host}/cgi-bin/count; do sleep 0.5; done\` on it while you kill the primary)`);
  else if (!options.net) say("no passt on this host (Debian package passt): the guest has no network in this demo");
  if (options.webOnly) say("the guest's console is in the web view; Ctrl-C stops the demo");
  else say("keys: Ctrl-] k = kill the primary (SIGKILL), Ctrl-] b = kill the backup, Ctrl-] j = start a new backup, Ctrl-] s = status, Ctrl-] q = quit");
  client.start();

  await new Promise<void>((resolve) => {
    const stdin = process.stdin;
    const raw = !options.webOnly && stdin.isTTY === true;
    if (raw) stdin.setRawMode(true);
    let escaped = false;
    const onData = (chunk: Buffer) => {
      const typed: number[] = [];
      for (const byte of chunk) {
        if (escaped) {
          escaped = false;
          const key = String.fromCharCode(byte).toLowerCase();
          if (key === "q") {
            typeBytes(typed);
            return finish();
          }
          if (key === "k") killPrimary();
          else if (key === "b") killBackup();
          else if (key === "j") void startBackup();
          else if (key === "s") {
            const live = nodes.filter((n) => n.process.running);
            say(live.map((n) => `${n.process.name}: ${n.role} pid ${n.process.pid} port ${n.process.port}`).join("; ") || "no live nodes");
          } else if (byte === escapeByte) typed.push(escapeByte);
          continue;
        }
        if (byte === escapeByte) {
          escaped = true;
          continue;
        }
        typed.push(byte);
      }
      typeBytes(typed);
    };
    const finish = () => {
      shown?.stop();
      if (!options.webOnly) {
        stdin.off("data", onData);
        if (raw) stdin.setRawMode(false);
        stdin.pause();
      }
      resolve();
    };
    if (!options.webOnly) {
      stdin.on("data", onData);
      stdin.resume();
    }
    process.once("SIGINT", finish);
    process.once("SIGTERM", finish);
  });
  clearInterval(poll);
  quitting.abort();
  await Promise.allSettled([...starts]);
  client.close();
  // a browser's connections must not hold the quit: give the web view two seconds to close
  await Promise.race([view.close(), new Promise((r) => setTimeout(r, 2000).unref())]);
  for (const n of nodes) n.process.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  for (const n of nodes) n.process.kill("SIGKILL");
  closeSync(logFd);
  if (net.mode === "user") stopPairPasst(dir); // the pair's passt outlives its nodes
  rmSync(dir, { recursive: true, force: true });
}
