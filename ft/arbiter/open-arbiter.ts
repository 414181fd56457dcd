/**
 * `--arbiter`: which arbiter a node uses. `file:DIR` is a directory both hosts share (the default,
 * `--shared-dir`); `etcd://HOST[:PORT][,HOST[:PORT]...]/PREFIX` is an etcd cluster both reach, with
 * one prefix per guest (default port 2379, default prefix `lockstep`).
 */
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { Arbiter } from "./arbiter.js";
import { EtcdArbiter } from "./etcd-arbiter.js";
import { FileArbiter } from "./file-arbiter.js";

export type ArbiterSpec = { kind: "file"; dir: string } | { kind: "etcd"; hosts: string[]; prefix: string };

const usage = "--arbiter file:DIR or etcd://HOST[:PORT][,HOST[:PORT]...]/PREFIX";

export function parseArbiterSpec(text: string): ArbiterSpec {
  const bad = (why: string) => new LockstepError(ErrorCode.arbiter, `--arbiter ${JSON.stringify(text)}: ${why}`, `use ${usage}`);
  if (text.startsWith("file:")) {
    const dir = text.slice(5);
    if (!dir) throw bad("no directory");
    return { kind: "file", dir };
  }
  const m = /^etcd:\/\/([^/]*)(?:\/(.*))?$/.exec(text);
  if (!m) throw bad("not a file: or etcd:// arbiter");
  if (!m[1]) throw bad("no etcd host");
  const hosts = m[1].split(",").map((h) => {
    const hp = /^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\])(?::(\d+))?$/.exec(h);
    if (!hp || Number(hp[2] ?? 2379) < 1 || Number(hp[2] ?? 2379) > 65535) throw bad(`${JSON.stringify(h)} is not HOST[:PORT]`);
    return `${hp[1]}:${hp[2] ?? 2379}`;
  });
  const prefix = (m[2] ?? "").replace(/\/+$/, "") || "lockstep";
  if (!/^[A-Za-z0-9._\/-]+$/.test(prefix)) throw bad(`prefix ${JSON.stringify(prefix)} may hold only letters, digits, . _ - /`);
  return { kind: "etcd", hosts, prefix };
}

export function describeArbiterSpec(spec: ArbiterSpec): string {
  return spec.kind === "file" ? `file:${spec.dir}` : `etcd://${spec.hosts.join(",")}/${spec.prefix}`;
}

export function openArbiter(spec: ArbiterSpec): Arbiter {
  return spec.kind === "file" ? new FileArbiter(spec.dir) : new EtcdArbiter({ hosts: spec.hosts, prefix: spec.prefix });
}
