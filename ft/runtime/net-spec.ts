/**
 * `--net`: what the guest's network card is attached to on the host, as the user says it, and where
 * a pair's passt lives. (The links themselves: net-link.ts, passt-link.ts, tap-link.ts.)
 */
import { createHash } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";

export type NetSpec =
  | { mode: "none" }
  | { mode: "user"; forwards: Array<{ host: number; guest: number }> }
  | { mode: "passt"; path: string }
  | { mode: "tap"; name: string };

/** The guest's address in user mode (passt maps the host's own addresses to it). */
export const userModeGuest = { address: "10.0.2.15", prefix: 24, gateway: "10.0.2.2" };

const netHint = "use --net none, --net user[:HOSTPORT=GUESTPORT,...], --net passt:SOCKET or --net tap:NAME";

/** Parses a `--net` value; a clear LOCKSTEP_ERR_NET_MODE error otherwise. */
export function parseNetSpec(text: string): NetSpec {
  const colon = text.indexOf(":");
  const mode = colon < 0 ? text : text.slice(0, colon);
  const rest = colon < 0 ? "" : text.slice(colon + 1);
  const bad = (why: string): never => {
    throw new LockstepError(ErrorCode.netMode, `--net ${JSON.stringify(text)}: ${why}`, netHint);
  };
  switch (mode) {
    case "none":
      if (rest) bad("none takes no options");
      return { mode: "none" };
    case "user": {
      const forwards: Array<{ host: number; guest: number }> = [];
      for (const part of rest ? rest.split(",") : []) {
        const m = /^(\d+)=(\d+)$/.exec(part);
        const host = m ? Number(m[1]) : NaN;
        const guest = m ? Number(m[2]) : NaN;
        if (!(host >= 1 && host <= 65535 && guest >= 1 && guest <= 65535)) bad(`${JSON.stringify(part)} is not HOSTPORT=GUESTPORT (ports 1 to 65535)`);
        if (forwards.some((f) => f.host === host)) bad(`host port ${host} is forwarded twice`);
        forwards.push({ host, guest });
      }
      return { mode: "user", forwards };
    }
    case "passt":
      if (!rest) bad("passt needs the path of its socket (passt:/path/to/passt.sock)");
      return { mode: "passt", path: rest };
    case "tap":
      if (!/^[A-Za-z0-9_.-]{1,15}$/.test(rest)) bad("tap needs a device name of 1 to 15 letters, digits, '-', '_' or '.'");
      return { mode: "tap", name: rest };
    default:
      return bad(`unknown mode ${JSON.stringify(mode)}`);
  }
}

export function describeNetSpec(spec: NetSpec): string {
  switch (spec.mode) {
    case "none":
      return "none";
    case "user":
      return `user${spec.forwards.length ? ":" + spec.forwards.map((f) => `${f.host}=${f.guest}`).join(",") : ""}`;
    case "passt":
      return `passt:${spec.path}`;
    case "tap":
      return `tap:${spec.name}`;
  }
}

/**
 * Where a pair's passt keeps its socket and pid file: named after the shared directory, so that the
 * next primary on this host finds it, but under the system's temporary directory, because passt
 * started by root runs as nobody, who may not reach into the shared directory.
 */
export function passtDirFor(sharedDir: string): string {
  const id = createHash("sha256").update(resolve(sharedDir)).digest("hex").slice(0, 16);
  return join(tmpdir(), `lockstep-passt-${id}`);
}

/** Stops the passt a pair left for its shared directory (it outlives the nodes), if any. */
export function stopPairPasst(sharedDir: string): void {
  const dir = passtDirFor(sharedDir);
  const pid = readPid(join(dir, "passt.pid"));
  if (pid) {
    try {
      process.kill(pid, "SIGTERM");
    } catch {
      // gone already
    }
  }
  rmSync(dir, { recursive: true, force: true });
}

/** A network for a machine without a card is a mistake worth saying at once. */
export function requireNic(spec: NetSpec | undefined, config: { name: string; nic?: unknown }): void {
  if (spec && spec.mode !== "none" && !config.nic) {
    throw new LockstepError(ErrorCode.netMode, `--net ${describeNetSpec(spec)}: machine "${config.name}" has no network card`, 'add "nic": {"type": "ne2k", "mac": "52:54:00:12:34:56"} to its config, or drop --net');
  }
}

export function readPid(file: string): number | undefined {
  try {
    const pid = Number(readFileSync(file, "utf8").trim());
    return pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

