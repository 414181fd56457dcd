/**
 * `lockstep primary`, `lockstep backup`, `lockstep console`, `lockstep status`: each node is its own
 * OS process; the console follows whichever node is live.
 */
import { hostname } from "node:os";
import { mkdirSync, readFileSync } from "node:fs";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { isStandbyBoard, type Arbiter, type JoinWanted } from "../arbiter/arbiter.js";
import { describeArbiterSpec, openArbiter, type ArbiterSpec } from "../arbiter/open-arbiter.js";
import { arbiterIdentity } from "../runtime/arbiter-checks.js";
import { scancodesForTerminal } from "../../emulator/scancodes.js";
import { nodeScreen, showScreen } from "./screen-view.js";
import { ConsoleClient } from "../runtime/console-client.js";
import { getJson } from "../runtime/get-json.js";
import { LockstepNode, type NodeOptions } from "../runtime/lockstep-node.js";
import { rootLogger } from "../logger.js";
import type { NetSpec } from "../runtime/net-spec.js";
import { attachTerminal, escapeKeyName } from "./terminal-console.js";

export interface NodeCommandOptions {
  listen: string;
  sharedDir?: string;
  arbiter?: ArbiterSpec;
  token?: string;
  peerToken?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  heartbeatMs: number;
  failureTimeoutMs: number;
  channelTimeoutMs: number;
  nodeId?: string;
  image?: string;
  memory?: number;
  disk?: string;
  connect?: string;
  join?: boolean;
  powerOnLogMib: number;
  net?: NetSpec;
}

export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(.*):(\d+)$/.exec(listen);
  if (!m || Number(m[2]) > 65535) throw new LockstepError(ErrorCode.usage, `--listen ${JSON.stringify(listen)} is not HOST:PORT`);
  return { host: m[1] || "127.0.0.1", port: Number(m[2]) };
}

export function requireToken(token: string | undefined): string {
  const t = token ?? process.env.LOCKSTEP_TOKEN;
  if (!t || t.length < 8) throw new LockstepError(ErrorCode.usage, "A console token of at least 8 characters is required", "pass --token or set LOCKSTEP_TOKEN");
  return t;
}

/** The peer credential: its own secret, not the console's (a console user must not be able to pose as the backup). */
export function requirePeerToken(peerToken: string | undefined, consoleToken: string): string {
  const t = peerToken ?? process.env.LOCKSTEP_PEER_TOKEN;
  if (!t || t.length < 8) throw new LockstepError(ErrorCode.usage, "A peer token of at least 8 characters is required", "pass --peer-token or set LOCKSTEP_PEER_TOKEN (the same on both nodes, and not the console's --token)");
  if (t === consoleToken) throw new LockstepError(ErrorCode.usage, "The peer token must differ from the console token", "anyone who may use the console could otherwise pose as the backup");
  return t;
}

/** Reads a PEM file named by a --tls-* option. */
export function readPem(path: string | undefined, what: string): Buffer | undefined {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path);
  } catch (e) {
    throw new LockstepError(ErrorCode.usage, `${what} ${path} cannot be read (${(e as NodeJS.ErrnoException).code})`);
  }
}

async function runNode(role: "primary" | "backup", o: NodeCommandOptions, opened?: { arbiter: Arbiter; nodeId: string }): Promise<void> {
  const { host, port } = parseListen(o.listen);
  const arbiterSpec: ArbiterSpec | undefined = o.arbiter ?? (o.sharedDir !== undefined ? { kind: "file", dir: o.sharedDir } : undefined);
  if (!arbiterSpec) throw new LockstepError(ErrorCode.usage, `lockstep ${role} needs an arbiter`, "pass --arbiter etcd://HOST:2379/PREFIX (hosts that share only a network) or --shared-dir DIR (a directory both hosts share)");
  const sharedDir = o.sharedDir ?? (arbiterSpec.kind === "file" ? arbiterSpec.dir : undefined);
  if (role === "primary" && !o.disk && sharedDir === undefined) throw new LockstepError(ErrorCode.usage, "lockstep primary needs a disk both hosts reach", "pass --disk nbd://HOST:PORT/EXPORT (or a file on shared storage), or --shared-dir");
  for (const dir of new Set([sharedDir, arbiterSpec.kind === "file" ? arbiterSpec.dir : undefined])) {
    if (dir === undefined) continue;
    try {
      mkdirSync(dir, { recursive: true });
    } catch (e) {
      throw new LockstepError(ErrorCode.usage, `Directory ${dir} cannot be made: ${(e as NodeJS.ErrnoException).code}`);
    }
  }
  if (o.channelTimeoutMs < o.failureTimeoutMs) throw new LockstepError(ErrorCode.usage, `--channel-timeout-ms ${o.channelTimeoutMs} is shorter than --failure-timeout-ms ${o.failureTimeoutMs}`, "the channel timeout is how much longer a stalled logging channel is tolerated while heartbeat datagrams still arrive");
  const nodeId = opened?.nodeId ?? o.nodeId ?? `${role}-${hostname()}-${process.pid}`;
  const arbiter = opened?.arbiter ?? openArbiter(arbiterSpec);
  const options: NodeOptions = {
    nodeId,
    host,
    port,
    token: requireToken(o.token),
    peerToken: requirePeerToken(o.peerToken, requireToken(o.token)),
    ...tlsOptions(o),
    arbiter,
    logger: rootLogger().child({ role, nodeId }),
    heartbeatIntervalMs: o.heartbeatMs,
    failureTimeoutMs: o.failureTimeoutMs,
    channelTimeoutMs: o.channelTimeoutMs,
    ...(o.image ? { image: o.image, imageOverride: o.image } : {}),
    ...(o.memory !== undefined ? { memoryMiB: o.memory } : {}),
    ...(o.disk ? { disk: o.disk } : {}),
    ...(sharedDir !== undefined ? { sharedDir } : {}),
    ...(o.connect ? { connect: o.connect } : {}),
    ...(o.join ? { join: true } : {}),
    powerOnLogBytesMax: o.powerOnLogMib * 2 ** 20,
    ...(o.net ? { net: o.net } : {}),
  };
  if (role === "backup" && !o.connect) throw new LockstepError(ErrorCode.usage, "lockstep backup needs --connect ws://PRIMARY:PORT");
  if (role === "primary") delete options.imageOverride;
  let node: LockstepNode;
  try {
    node = role === "primary" ? await LockstepNode.startPrimary(options) : await LockstepNode.startBackup(options);
  } catch (e) {
    await arbiter.close?.();
    throw e;
  }
  options.logger.info({ arbiter: describeArbiterSpec(arbiterSpec) }, "arbiter");
  // machine-readable line for scripts (the demo reads it)
  process.stdout.write(JSON.stringify({ event: "listening", role, nodeId, port: node.port }) + "\n");
  node.on("live", (epoch: number) => process.stdout.write(JSON.stringify({ event: "live", nodeId, epoch }) + "\n"));
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once("SIGINT", stop);
    process.once("SIGTERM", stop);
    node.once("halted", (reason: string) => {
      process.stdout.write(JSON.stringify({ event: "halted", nodeId, reason }) + "\n");
      process.exitCode = 3;
      resolve();
    });
  });
  await node.close();
  await arbiter.close?.();
}

export const primaryCommand = (o: NodeCommandOptions) => runNode("primary", o);
export const backupCommand = (o: NodeCommandOptions) => runNode("backup", o);

/** How often a standby renews its registration and looks for a primary that wants a backup. */
const standbyPollMs = 250;

/**
 * `lockstep standby`: a spare host of one pair (its etcd prefix). It registers, and when a primary
 * of the pair has run unprotected for a moment it takes the request, unless another standby did,
 * and becomes that primary's backup, joining from a checkpoint. A standby is used once: after its
 * node stops, a new standby is started (by systemd, or a person).
 */
export async function standbyCommand(o: NodeCommandOptions): Promise<void> {
  if (o.arbiter?.kind !== "etcd") throw new LockstepError(ErrorCode.arbiter, "lockstep standby needs --arbiter etcd://HOST:PORT/PREFIX", "standbys find the primary that wants a backup through etcd");
  const arbiter = openArbiter(o.arbiter);
  if (!isStandbyBoard(arbiter)) throw new LockstepError(ErrorCode.arbiter, "this arbiter keeps no standbys");
  const nodeId = o.nodeId ?? `standby-${hostname()}-${process.pid}`;
  const log = rootLogger().child({ role: "standby", nodeId });
  let want: JoinWanted | undefined;
  try {
    await arbiterIdentity(arbiter);
    const { host, port } = parseListen(o.listen);
    process.stdout.write(JSON.stringify({ event: "standby", nodeId }) + "\n");
    log.info({ arbiter: describeArbiterSpec(o.arbiter) }, "standing by");
    let stop = false;
    const onSignal = () => (stop = true);
    process.once("SIGINT", onSignal);
    process.once("SIGTERM", onSignal);
    let unreachable = false;
    while (!stop && !want) {
      const registered = await arbiter.registerStandby(nodeId, `http://${host}:${port}`);
      if (registered === undefined && !unreachable) log.warn("the arbiter cannot be reached: still standing by");
      unreachable = registered === undefined;
      want = registered ? await arbiter.takeJoin(nodeId) : undefined;
      if (want && stop) {
        // told to stop while taking a request: give it back for another standby
        await arbiter.giveBackJoin();
        want = undefined;
      }
      if (!want) await new Promise((r) => setTimeout(r, standbyPollMs));
    }
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  } catch (e) {
    await arbiter.close?.();
    throw e;
  }
  if (!want) return void (await arbiter.close?.());
  process.stdout.write(JSON.stringify({ event: "chosen", nodeId, primary: want.primary, epoch: want.epoch }) + "\n");
  log.info({ primary: want.primary, url: want.url, epoch: want.epoch }, "chosen: joining the primary as its backup");
  await runNode("backup", { ...o, connect: want.url, join: true }, { arbiter, nodeId });
}

/**
 * `lockstep console`: the terminal on the live node's serial console, or (`screen`) on its VGA text
 * screen with typed keys sent as scancodes through the same exactly-once input path.
 */
export async function consoleCommand(urls: string[], token: string | undefined, tlsCa?: string, screen = false): Promise<void> {
  const ca = readPem(tlsCa, "--tls-ca");
  const credential = requireToken(token);
  const client = new ConsoleClient({ urls, token: credential, ...(ca ? { ca } : {}) });
  const log = rootLogger().child({ component: "console" });
  if (!screen) client.on("output", (b: Uint8Array) => process.stdout.write(b));
  const shown = screen
    ? showScreen(
        async () => (client.connectedTo ? nodeScreen(client.connectedTo, credential, ca) : undefined),
        (text) => process.stdout.write(text),
      )
    : undefined;
  client.on("attached", (url: string, epoch: number) => log.info({ url, epoch }, "attached"));
  client.on("detached", (url: string) => log.warn({ url }, "connection lost: following the live node"));
  client.on("warning", (w: string) => log.warn(w));
  await new Promise<void>((resolve) => {
    const terminal = attachTerminal(
      (b) => client.send(screen ? scancodesForTerminal(Buffer.from(b).toString("latin1")) : b, screen),
      () => {
        terminal.close();
        resolve();
      },
    );
    log.info(`console on ${urls.join(", ")}; ${escapeKeyName} quits`);
    process.once("SIGINT", resolve);
    process.once("SIGTERM", resolve);
    client.start();
  });
  shown?.stop();
  client.close();
}

export async function statusCommand(urls: string[], json: boolean, tlsCa?: string): Promise<void> {
  const rows: Array<Record<string, unknown>> = [];
  const ca = readPem(tlsCa, "--tls-ca");
  for (const u of urls) {
    const url = new URL("/status", u.replace(/^ws/, "http"));
    try {
      rows.push({ url: u, ...(await getJson<Record<string, unknown>>(url, { timeoutMs: 2000, ...(ca ? { ca } : {}) })) });
    } catch (e) {
      rows.push({ url: u, role: "unreachable", error: (e as Error).message });
    }
  }
  if (json) {
    process.stdout.write(JSON.stringify(rows, null, 2) + "\n");
    return;
  }
  for (const r of rows) {
    if (r.role === "unreachable") {
      process.stdout.write(`${r.url}  unreachable (${r.error})\n`);
      continue;
    }
    const lag = r.lagSlices === null || r.lagSlices === undefined ? "-" : `${r.lagSlices} slices`;
    const hold = r.arbiterHeld === false ? "  NO HOLD AT THE ARBITER (waiting)" : "";
    process.stdout.write(
      `${r.url}  ${String(r.role).padEnd(8)} epoch ${r.epoch}  ${r.role === "primary" ? (r.protected ? `protected by ${r.backup}` : "UNPROTECTED") : `state ${r.state}`}${hold}  slice ${r.slice}  lag ${lag}  log ${r.logEntries} entries  console ${r.releasedBytes}/${r.outputBytes} bytes\n`,
    );
  }
}

function tlsOptions(o: NodeCommandOptions): { tls?: { cert: Buffer; key: Buffer }; ca?: Buffer } {
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) throw new LockstepError(ErrorCode.usage, "--tls-cert and --tls-key go together");
  const cert = readPem(o.tlsCert, "--tls-cert");
  const key = readPem(o.tlsKey, "--tls-key");
  const ca = readPem(o.tlsCa, "--tls-ca");
  return { ...(cert && key ? { tls: { cert, key } } : {}), ...(ca ? { ca } : {}) };
}
