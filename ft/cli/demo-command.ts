/**
 * `lockstep demo` (npm start): a primary and a backup as separate processes on loopback, sharing an
 * arbiter directory, with this terminal as the guest's console. Ctrl-] then k kills the primary with
 * SIGKILL; the status line shows when the backup took over and when console output flowed again.
 * After a takeover a fresh backup process joins the new primary from a checkpoint (--join),
 * so the pair is protected again and the primary can be killed again.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, openSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { ConsoleClient } from "../runtime/console-client.js";
import { escapeByte } from "./terminal-console.js";

interface DemoNode {
  name: string;
  port: number;
  child: ChildProcess;
  role: "primary" | "backup";
  alive: boolean;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export async function demoCommand(options: { image: string }): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-demo-"));
  const token = randomBytes(16).toString("hex");
  const cli = fileURLToPath(new URL("./main.js", import.meta.url));
  const logFile = join(dir, "nodes.log");
  const logFd = openSync(logFile, "a");
  const nodes: DemoNode[] = [];
  const names = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";
  const say = (text: string) => process.stderr.write(`\r\n\x1b[7m[lockstep demo] ${text}\x1b[0m\r\n`);
  let killedAt: number | undefined;
  let awaitingFirstByte = false;

  const startNode = async (role: "primary" | "backup", connect?: number, joinFromCheckpoint = false): Promise<DemoNode> => {
    const name = names[nodes.length % names.length]!;
    const port = await freePort();
    const args = [cli, role, "--listen", `127.0.0.1:${port}`, "--shared-dir", dir, "--token", token, "--node-id", name];
    if (role === "primary") args.push("--image", options.image);
    if (connect) args.push("--connect", `ws://127.0.0.1:${connect}`);
    if (joinFromCheckpoint) args.push("--join");
    const child = spawn(process.execPath, args, { stdio: ["ignore", "pipe", logFd], env: { ...process.env, LOCKSTEP_LOG_LEVEL: "info" } });
    const node: DemoNode = { name, port, child, role, alive: true };
    nodes.push(node);
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const ev = JSON.parse(line) as { event: string; epoch?: number; reason?: string };
        if (ev.event === "live" && role === "backup") {
          node.role = "primary";
          const ms = killedAt !== undefined ? ` ${Math.round(performance.now() - killedAt)} ms after the kill` : "";
          say(`backup ${name} took over as primary (epoch ${ev.epoch})${ms}; starting a new backup`);
          void startNode("backup", node.port, true).then((b) => client.addUrl(`ws://127.0.0.1:${b.port}`));
        }
        if (ev.event === "halted") say(`node ${name} halted: ${ev.reason}`);
      } catch {
        // not an event line
      }
    });
    child.on("exit", () => {
      node.alive = false;
    });
    return node;
  };

  const primary = await startNode("primary");
  const urls = [`ws://127.0.0.1:${primary.port}`];
  const client = new ConsoleClient({ urls, token });
  await startNode("backup", primary.port).then((b) => client.addUrl(`ws://127.0.0.1:${b.port}`));

  client.on("output", (b: Uint8Array) => {
    if (awaitingFirstByte && killedAt !== undefined) {
      awaitingFirstByte = false;
      say(`console output flowing again ${Math.round(performance.now() - killedAt)} ms after the kill (from ${client.connectedTo})`);
    }
    process.stdout.write(b);
  });
  client.on("attached", (url: string, epoch: number) => {
    if (killedAt !== undefined) say(`console reattached to ${url} (epoch ${epoch}) ${Math.round(performance.now() - killedAt)} ms after the kill`);
  });

  // report protection changes of whichever node is primary
  let lastProtection = "";
  const poll = setInterval(async () => {
    const p = nodes.find((n) => n.alive && n.role === "primary");
    if (!p) return;
    try {
      const s = (await (await fetch(`http://127.0.0.1:${p.port}/status`, { signal: AbortSignal.timeout(500) })).json()) as { protected: boolean; backup: string | null; state: string; epoch: number };
      const now = s.protected ? `protected by ${s.backup}` : s.state === "joining" ? `backup ${s.backup} catching up` : "UNPROTECTED";
      if (now !== lastProtection) {
        lastProtection = now;
        say(`primary ${p.name} (epoch ${s.epoch}): ${now}`);
      }
    } catch {
      // the primary may just have died
    }
  }, 250);
  say("keys: Ctrl-] k = kill the primary (SIGKILL), Ctrl-] b = kill the backup, Ctrl-] s = status, Ctrl-] q = quit");
  client.start();

  await new Promise<void>((resolve) => {
    const stdin = process.stdin;
    const raw = stdin.isTTY === true;
    if (raw) stdin.setRawMode(true);
    let escaped = false;
    const onData = (chunk: Buffer) => {
      for (const byte of chunk) {
        if (escaped) {
          escaped = false;
          const key = String.fromCharCode(byte).toLowerCase();
          const live = nodes.filter((n) => n.alive);
          if (key === "q") return finish();
          if (key === "k") {
            const p = live.find((n) => n.role === "primary");
            if (!p) say("no live primary");
            else {
              killedAt = performance.now();
              awaitingFirstByte = true;
              p.child.kill("SIGKILL");
              say(`killed primary ${p.name} (pid ${p.child.pid}) with SIGKILL`);
            }
          } else if (key === "b") {
            const b = live.find((n) => n.role === "backup");
            if (!b) say("no live backup");
            else {
              b.child.kill("SIGKILL");
              say(`killed backup ${b.name} (pid ${b.child.pid}); the primary goes on unprotected`);
            }
          } else if (key === "s") {
            say(live.map((n) => `${n.name}: ${n.role} pid ${n.child.pid} port ${n.port}`).join("; ") || "no live nodes");
          } else if (byte === escapeByte) {
            client.send(Uint8Array.of(escapeByte));
          }
          continue;
        }
        if (byte === escapeByte) {
          escaped = true;
          continue;
        }
        client.send(Uint8Array.of(byte));
      }
    };
    const finish = () => {
      stdin.off("data", onData);
      if (raw) stdin.setRawMode(false);
      stdin.pause();
      resolve();
    };
    stdin.on("data", onData);
    stdin.resume();
    process.once("SIGINT", finish);
    process.once("SIGTERM", finish);
  });
  clearInterval(poll);
  client.close();
  for (const n of nodes) if (n.alive) n.child.kill("SIGTERM");
  await new Promise((r) => setTimeout(r, 300));
  for (const n of nodes) if (n.alive) n.child.kill("SIGKILL");
  rmSync(dir, { recursive: true, force: true });
}
