/**
 * NodeProcess: one lockstep node (`lockstep primary|backup`) run as a child process on loopback, as
 * the demo, the benchmarks and the integration tests run them. It exposes the JSON event lines the
 * node prints on stdout ("listening", "live", "halted"), its exit, its /status and its log, and can
 * pin the node to some CPUs (taskset) so that a benchmark gives each node a core of its own.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { EventEmitter } from "node:events";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { packageRoot } from "../../emulator/package-root.js";

export type NodeRole = "primary" | "backup" | "standby";

/** One line of the node's stdout, e.g. `{"event":"live","nodeId":"B","epoch":2}`. */
export interface NodeEvent {
  event: string;
  [field: string]: unknown;
}

export interface NodeProcessOptions {
  role: NodeRole;
  /** --node-id */
  name: string;
  /** --shared-dir: the arbiter directory the nodes of a pair share (or the node's own, with --arbiter etcd://). */
  sharedDir?: string;
  /** The address to listen on and to reach the node at (default 127.0.0.1). */
  host?: string;
  /** More environment for the node. */
  env?: Record<string, string>;
  /** Run the node inside this network namespace (`ip netns exec`, which execs: the pid is the node's). */
  netns?: string;
  /** Console credential (--token). */
  token: string;
  /** Peer credential (--peer-token); default: the console's with "-peer" appended. */
  peerToken?: string;
  /** Further options of the command: --image, --connect, --join, --disk ... */
  args?: string[];
  /** The port to listen on. Default 0: the OS picks a free one and the node reports it when listening. */
  port?: number;
  /** A CPU list for `taskset -c` (e.g. "1" or "0,2"): the node runs on these CPUs only. */
  cpus?: string;
  /** The node's LOCKSTEP_LOG_LEVEL; default "info". */
  logLevel?: string;
  /** The node's log (stderr): kept in `stderr` (the default), dropped, passed through, or a file descriptor. */
  stderr?: "capture" | "ignore" | "inherit" | number;
  /** How long `start` waits for the node to listen; default 60 s. */
  startTimeoutMs?: number;
  /** Aborted while `start` waits: the node is killed and `start` rejects (its caller is quitting). */
  signal?: AbortSignal;
}

/** The captured log is cut to its newest bytes beyond this, so that a long run cannot exhaust memory. */
const stderrCharsMax = 8 * 2 ** 20;

export class NodeProcess extends EventEmitter {
  readonly name: string;
  readonly role: NodeRole;
  readonly child: ChildProcess;
  readonly host: string;
  readonly events: NodeEvent[] = [];
  /** The node's log, when captured. */
  stderr = "";
  /** undefined while the process runs; its exit code (null if a signal ended it) afterwards. */
  exitCode: number | null | undefined;
  /** The port the node listens on (known once it has printed "listening"). */
  port: number;

  /** Spawns a node and resolves once it listens. */
  static async start(options: NodeProcessOptions): Promise<NodeProcess> {
    const node = new NodeProcess(options);
    const abort = () => node.kill("SIGKILL");
    if (options.signal?.aborted) abort();
    options.signal?.addEventListener("abort", abort, { once: true });
    try {
      // a standby listens only once chosen (its "listening" line then sets the port)
      const ready = await node.waitEvent(options.role === "standby" ? "standby" : "listening", options.startTimeoutMs ?? 60_000);
      if (ready.event === "listening") node.port = Number(ready.port);
    } catch (e) {
      node.kill("SIGKILL");
      throw e;
    } finally {
      options.signal?.removeEventListener("abort", abort);
    }
    return node;
  }

  private constructor(options: NodeProcessOptions) {
    super();
    this.name = options.name;
    this.role = options.role;
    this.port = options.port ?? 0;
    const cli = join(packageRoot(), "dist", "ft", "cli", "main.js");
    this.host = options.host ?? "127.0.0.1";
    const argv = [cli, options.role, "--listen", `${this.host}:${this.port}`, ...(options.sharedDir !== undefined ? ["--shared-dir", options.sharedDir] : []), "--token", options.token, "--peer-token", options.peerToken ?? `${options.token}-peer`, "--node-id", options.name, ...(options.args ?? [])];
    const stderr = options.stderr ?? "capture";
    // taskset execs the node in its own place, so the child's pid and signals are the node's
    let [command, args] = options.cpus !== undefined ? ["taskset", ["-c", options.cpus, process.execPath, ...argv]] : [process.execPath, argv];
    if (options.netns !== undefined) [command, args] = ["ip", ["netns", "exec", options.netns, command, ...args]];
    this.child = spawn(command, args, {
      stdio: ["ignore", "pipe", stderr === "capture" ? "pipe" : stderr],
      env: { ...process.env, LOCKSTEP_LOG_LEVEL: options.logLevel ?? "info", ...options.env },
    });
    createInterface({ input: this.child.stdout! }).on("line", (line) => {
      let event: NodeEvent;
      try {
        event = JSON.parse(line) as NodeEvent;
      } catch {
        return; // not an event line
      }
      if (typeof event !== "object" || event === null || typeof event.event !== "string") return;
      this.events.push(event);
      if (event.event === "listening") this.port = Number(event.port);
      this.emit("event", event);
    });
    this.child.stderr?.on("data", (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > stderrCharsMax) this.stderr = this.stderr.slice(-stderrCharsMax / 2);
    });
    // "close", not "exit": it comes after the last stdout line, so a "halted" line is never missed
    this.child.on("close", (code) => this.exited(code));
    this.child.on("error", (e) => {
      // the process could not be spawned (e.g. no taskset): there will be no "close" with a code
      if (this.child.pid === undefined) {
        this.stderr += `${command}: ${e.message}\n`;
        this.exited(null);
      }
    });
  }

  private exited(code: number | null): void {
    if (this.exitCode !== undefined) return;
    this.exitCode = code;
    this.emit("exit", code);
  }

  get url(): string {
    return `ws://${this.host}:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** The first event of this name the node printed (now or later); rejects if the node exits first. */
  waitEvent(event: string, timeoutMs = 60_000): Promise<NodeEvent> {
    return new Promise((resolve, reject) => {
      const check = () => {
        const e = this.events.find((x) => x.event === event);
        if (e) {
          done();
          resolve(e);
        } else if (this.exitCode !== undefined) {
          done();
          reject(new Error(`node ${this.name} exited (${this.exitCode ?? this.child.signalCode}) before "${event}":\n${this.stderr.slice(-2000)}`));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`node ${this.name}: no "${event}" within ${timeoutMs} ms:\n${this.stderr.slice(-2000)}`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off("event", check);
        this.off("exit", check);
      };
      this.on("event", check);
      this.on("exit", check);
      check();
    });
  }

  /** Resolves with the exit code (null after a signal). */
  waitExit(timeoutMs = 30_000): Promise<number | null> {
    return new Promise((resolve, reject) => {
      if (this.exitCode !== undefined) return resolve(this.exitCode);
      const onExit = (code: number | null) => {
        clearTimeout(timer);
        resolve(code);
      };
      const timer = setTimeout(() => {
        this.off("exit", onExit);
        reject(new Error(`node ${this.name} did not exit within ${timeoutMs} ms`));
      }, timeoutMs);
      this.once("exit", onExit);
    });
  }

  /** The node's GET /status. */
  async status<T = Record<string, unknown>>(timeoutMs = 2000): Promise<T> {
    const res = await fetch(`http://${this.host}:${this.port}/status`, { signal: AbortSignal.timeout(timeoutMs) });
    return (await res.json()) as T;
  }

  /** Sends a signal (SIGKILL by default: a crash) unless the process has already exited. */
  kill(signal: NodeJS.Signals = "SIGKILL"): void {
    if (this.exitCode === undefined) this.child.kill(signal);
  }
}
