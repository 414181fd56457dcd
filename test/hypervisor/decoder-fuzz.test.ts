// Seeded fuzzing of every decoder of untrusted bytes: the log file reader (header, frames, entries),
// checkpoints, the peer and console wire messages, and a replay of a mutated recording of the tiny
// guest. Each case starts from a valid input and damages it: bit flips, truncation, inserted and
// deleted bytes, msgpack length prefixes claiming gigabytes, and, on the decoded msgpack tree, fields
// replaced by hostile values, deleted, added or swapped with each other, then encoded again with
// valid checksums so that the damage reaches the checks behind them. A case passes when it decodes
// or is refused with a LockstepError or WireError whose code that decoder may raise; any other
// exception, or a replay running more slices than its log can justify, fails the test naming the
// seed and the case.
//
//   FUZZ_SEED=n           another seed (default fixed)
//   FUZZ_CASES=n          cases per decoder (default 3000; a third of it for checkpoints)
//   FUZZ_REPLAY_CASES=n   replays of a mutated recording (default 30; each builds a machine, ~50 ms)
//   FUZZ_CASE=name:n      only that case (the failure message gives it)
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { crc32, gunzipSync, gzipSync } from "node:zlib";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import { loadMachine } from "../../emulator/machine-config.js";
import { decodeConsoleClientMessage, decodeConsoleServerMessage, encodeConsoleMessage } from "../../ft/wire/console-messages.js";
import { WireError, WireErrorCode } from "../../ft/wire/envelope.js";
import { decodePeerMessage, encodePeerMessage, type PeerMessage } from "../../ft/wire/peer-messages.js";
import { SeededRandom } from "../../ft/testing/seeded-random.js";
import { checkpointFormat, decodeCheckpoint, encodeCheckpoint, type SessionCheckpoint } from "../../hypervisor/checkpoint.js";
import { decodeEntry, encodeEntry, logFormatVersion, type LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { checkHeader } from "../../hypervisor/log-header.js";
import { LogReader, packr, type LogHeader } from "../../hypervisor/log-file.js";
import { MachineSession } from "../../hypervisor/machine-session.js";
import { Replayer } from "../../hypervisor/replayer.js";
import { GuestDriver } from "../support/guest-driver.js";
import { headerFor } from "../support/record-replay.js";

const seed = Number(process.env.FUZZ_SEED ?? 20261110);
const cases = Number(process.env.FUZZ_CASES ?? 3000);
const replayCases = Number(process.env.FUZZ_REPLAY_CASES ?? 30);
const only = process.env.FUZZ_CASE;

const dir = mkdtempSync(join(tmpdir(), "lockstep-fuzz-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

// ------------------------------------------------------------------------------------ the harness

/** The generator of one case: a function of (seed, decoder, case number) alone. */
function caseRandom(name: string, n: number): SeededRandom {
  let h = Math.imul(seed ^ 0x5bd1e995, 0x9e3779b1) >>> 0;
  for (const c of `${name}:${n}`) h = Math.imul(h ^ c.charCodeAt(0), 0x85ebca6b) >>> 0;
  return new SeededRandom((h ^ (h >>> 13)) >>> 0);
}

type Outcome = string; // "ok" or the code of the refusal

/**
 * Runs the cases of one decoder: `make` builds a case's input, `decode` feeds it to the decoder.
 * Fails at the first exception of `decode` that is not a refusal with an allowed code. Returns how
 * many cases ended how.
 */
async function runCases<T>(
  name: string,
  count: number,
  allowed: readonly string[],
  make: (r: SeededRandom) => T | Promise<T>,
  decode: (input: T, r: SeededRandom, n: number) => unknown,
): Promise<Map<Outcome, number>> {
  const outcomes = new Map<Outcome, number>();
  const numbers = only ? (only.startsWith(`${name}:`) ? [Number(only.slice(name.length + 1))] : []) : Array.from({ length: count }, (_, i) => i);
  const started = performance.now();
  const cpuBefore = process.cpuUsage();
  for (const n of numbers) {
    let outcome: Outcome = "ok";
    const r = caseRandom(name, n);
    const input = await make(r);
    try {
      await decode(input, r, n);
    } catch (e) {
      const code = e instanceof LockstepError || e instanceof WireError ? e.code : undefined;
      if (code === undefined || !allowed.includes(code)) {
        const what = e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ""}` : String(e);
        throw new Error(`${name} case ${n} (FUZZ_SEED=${seed}) ended in ${code ?? "an exception that is no refusal"}: ${what}\nreproduce: FUZZ_SEED=${seed} FUZZ_CASE=${name}:${n} npx vitest run test/hypervisor/decoder-fuzz.test.ts`);
      }
      outcome = code;
    }
    outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
  }
  // reported, never asserted: how long a case takes (CPU time, as the host may be busy)
  const ms = performance.now() - started;
  const cpu = process.cpuUsage(cpuBefore);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  const summary = [...outcomes].map(([k, v]) => `${k.replace("LOCKSTEP_ERR_", "")} ${v}`).join(", ");
  console.log(`fuzz ${name}: ${numbers.length} cases, ${cpuMs.toFixed(0)} ms CPU (${Math.round((numbers.length / cpuMs) * 1000)}/s), ${ms.toFixed(0)} ms wall; seed ${seed}: ${summary}`);
  return outcomes;
}

/**
 * Checks that the mutations reach past the first checks (some cases decode, some are refused with
 * these codes): a fuzzer whose every case died at a checksum would test nothing. Skipped for a
 * single case or a small run.
 */
function expectReached(outcomes: Map<Outcome, number>, ...codes: string[]): void {
  if (only || cases < 1000) return;
  for (const code of ["ok", ...codes]) expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(0);
}

// ------------------------------------------------------------------------------------ mutations

const pick = <T>(r: SeededRandom, xs: readonly T[]): T => xs[r.int(0, xs.length - 1)]!;

/** Byte sequences that mean something to msgpack: length prefixes claiming up to 4 GiB, odd types. */
const hostileBytes: number[][] = [
  [0x00], [0xff], [0x7f], [0x80], [0xc0], [0xc1], [0xc2], [0xc3],
  [0xdc, 0xff, 0xff], [0xdd, 0xff, 0xff, 0xff, 0xff], [0xdd, 0x7f, 0xff, 0xff, 0xff], // arrays of 64 Ki and 4 Gi items
  [0xde, 0xff, 0xff], [0xdf, 0xff, 0xff, 0xff, 0xff], // maps
  [0xc6, 0xff, 0xff, 0xff, 0xff], [0xdb, 0xff, 0xff, 0xff, 0xff], [0xd9, 0xff], // bin and str
  [0xcf, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff], [0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0], // 64-bit integers
  [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0], [0xcb, 0x7f, 0xf0, 0, 0, 0, 0, 0, 0], // NaN, Infinity
  [0xd4, 0xff, 0x00], [0xd6, 0xff, 0, 0, 0, 0], [0xc7, 0x05, 0x01, 1, 2, 3, 4, 5], [0xd4, 0x00, 0x00], // extensions
];

/** Damages bytes: flips, truncation, insertion, deletion, hostile prefixes, duplication. */
function mutateBytes(r: SeededRandom, input: Uint8Array): Uint8Array {
  let b: Uint8Array = new Uint8Array(input);
  for (let k = r.int(1, 3); k > 0; k--) {
    const at = r.int(0, Math.max(0, b.length - 1));
    switch (r.int(0, 6)) {
      case 0:
        for (let i = r.int(1, 8); i > 0 && b.length > 0; i--) b[r.int(0, b.length - 1)]! ^= 1 << r.int(0, 7);
        break;
      case 1:
        b = b.subarray(0, r.int(0, b.length));
        break;
      case 2: {
        const extra = Uint8Array.from({ length: r.int(1, 16) }, () => r.int(0, 255));
        b = concat([b.subarray(0, at), extra, b.subarray(at)]);
        break;
      }
      case 3:
        b = concat([b.subarray(0, at), b.subarray(Math.min(b.length, at + r.int(1, 32)))]);
        break;
      case 4:
      case 5: {
        const h = pick(r, hostileBytes);
        b = r.chance(0.5) ? concat([b.subarray(0, at), Uint8Array.from(h), b.subarray(at + h.length)]) : concat([b.subarray(0, at), Uint8Array.from(h), b.subarray(at)]);
        break;
      }
      case 6: {
        const from = r.int(0, Math.max(0, b.length - 1));
        b = concat([b.subarray(0, at), b.subarray(from, from + r.int(1, 64)), b.subarray(at)]);
        break;
      }
    }
  }
  return b;
}

function concat(parts: Uint8Array[]): Uint8Array {
  return Buffer.concat(parts);
}

/** Values a hostile encoder may put anywhere (made fresh for each use: mutations change them). */
const hostileValues: Array<() => unknown> = [
  ...[-1, 0, 1, 0.5, -0, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e308, -1e308, 1e-308, NaN, Infinity, -Infinity].map((v) => () => v),
  ...["", "x", "a".repeat(300), "power-off", "checkpoint", "0123456789abcdef", "f".repeat(64)].map((v) => () => v),
  () => null,
  () => undefined,
  () => true,
  () => false,
  () => [],
  () => [1, 2, 3],
  () => [[[[[]]]]],
  () => ({}),
  () => ({ toString: 1 }),
  () => ({ valueOf: 0, toString: "x" }),
  () => ({ kind: "power-on" }),
  () => new Uint8Array(0),
  () => new Uint8Array(1),
  () => new Uint8Array(5000).fill(0x41),
  () => new Uint8Array(300_000),
  () => new Date(0),
];
const hostile = (r: SeededRandom): unknown => pick(r, hostileValues)();

type Node = Record<string | number, unknown>;
const isNode = (v: unknown): v is Node => typeof v === "object" && v !== null && !(v instanceof Uint8Array) && !(v instanceof Date);

/** Every (container, key) of a decoded msgpack tree, the root's holder included. */
function slots(root: Node): Array<[Node, string | number]> {
  const out: Array<[Node, string | number]> = [];
  const walk = (n: Node, depth: number) => {
    if (depth > 8) return;
    for (const k of Array.isArray(n) ? n.keys() : Object.keys(n)) {
      out.push([n, k]);
      const v = n[k];
      if (isNode(v)) walk(v, depth + 1);
    }
  };
  walk(root, 0);
  return out;
}

/** Damages a decoded msgpack tree in place: replace, delete, add, swap, nudge a number, resize bytes. */
function mutateTree(r: SeededRandom, value: unknown): unknown {
  const holder: Node = { root: value };
  for (let k = r.int(1, 3); k > 0; k--) {
    const all = slots(holder);
    if (all.length === 0) {
      holder.root = hostile(r); // the root itself was deleted
      continue;
    }
    const [n, key] = pick(r, all);
    switch (r.int(0, 6)) {
      case 0:
      case 1:
        n[key] = hostile(r);
        break;
      case 2:
        if (Array.isArray(n)) n.splice(Number(key), 1);
        else delete n[key];
        break;
      case 3:
        if (Array.isArray(n)) n.push(hostile(r));
        else n[pick(r, ["v", "type", "epoch", "x", "data", "machine", "clock", "slice", "source"])] = hostile(r);
        break;
      case 4: {
        const [m, other] = pick(r, all);
        [n[key], m[other]] = [m[other], n[key]];
        break;
      }
      case 5: {
        const v = n[key];
        if (typeof v === "number") n[key] = pick(r, [v + 1, v - 1, v * 2 ** r.int(1, 40), -v, v + 0.5]);
        else if (typeof v === "string") n[key] = v.slice(0, r.int(0, v.length)) + pick(r, ["", "x", "\u0000", "é"]);
        else n[key] = hostile(r);
        break;
      }
      case 6: {
        const v = n[key];
        if (v instanceof Uint8Array) n[key] = r.chance(0.5) ? v.subarray(0, r.int(0, v.length)) : concat([v, new Uint8Array(r.int(1, 70_000))]);
        else n[key] = hostile(r);
        break;
      }
    }
  }
  return holder.root;
}

/** A deep copy of a decoded msgpack tree (Buffers become plain copies). */
const copyTree = (v: unknown): unknown => packr.unpack(packr.pack(v));

/** A message damaged on the decoded tree (then packed again), in its bytes, or both. */
function mutateMessage(r: SeededRandom, valid: Uint8Array): Uint8Array {
  const mode = r.int(0, 9);
  if (mode === 9) return Uint8Array.from({ length: r.int(0, 64) }, () => r.int(0, 255)); // noise
  const tree = mode <= 5 ? packr.pack(mutateTree(r, copyTree(packr.unpack(valid)))) : valid;
  return mode >= 4 ? mutateBytes(r, tree) : tree;
}

// ------------------------------------------------------------------------------------ valid inputs

const header: LogHeader = {
  format: logFormatVersion,
  v86: "0.5.462",
  lockstep: "0.1.0",
  machine: { name: "tiny", description: "", kind: "multiboot", memoryMiB: 32, files: { multiboot: { path: "tiny.bin", sha256: "6".repeat(64) } }, disk: { sizeMiB: 1, format: "raw" } },
  disk: { bytes: 1 << 20, sha256: "a".repeat(64), fresh: { sizeMiB: 1, format: "raw" } },
  clock: { epochMs: 1_700_000_000_000, msPerInstruction: 1e-5, seed: 3 },
  initialState: { kind: "power-on" },
  digestEverySlices: 10,
  recordedAt: "2026-01-01T00:00:00.000Z",
};

const entries: LogEntry[] = [
  { kind: "clock", slice: 1, icount: 4071, advanceMs: 9.5 },
  { kind: "serial", slice: 1, icount: 4071, data: new TextEncoder().encode("ping\r"), source: { client: "c1", seq: 1 } },
  { kind: "keys", slice: 3, icount: 5000, data: Uint8Array.from([0x1e, 0x9e]) },
  { kind: "keys", slice: 3, icount: 5000, data: Uint8Array.from([0x30]), source: { client: "c2", seq: 2 } },
  { kind: "clock", slice: 4, icount: 6000, msPerInstruction: 2e-5 },
  { kind: "digest", slice: 10, icount: 2 ** 40 + 5, digest: "0123456789abcdef" },
  { kind: "progress", slice: 10, icount: 2 ** 40 + 5 },
  { kind: "disk-read", slice: 10, icount: 2 ** 40 + 5, id: 3, at: 512, data: new Uint8Array(1024).fill(7) },
  { kind: "disk-write", slice: 10, icount: 2 ** 40 + 5, id: 4 },
  { kind: "control", slice: 11, icount: 2 ** 40 + 9, action: "checkpoint" },
  { kind: "control", slice: 11, icount: 2 ** 40 + 9, action: "power-off" },
];

function frame(payload: Uint8Array): Uint8Array {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(payload.length, 0);
  head.writeUInt32BE(crc32(payload), 4);
  return concat([head, payload]);
}

/** A log file from a header tree and entry payloads, every length and checksum right. */
function logFile(h: unknown, payloads: Uint8Array[], version = logFormatVersion): Uint8Array {
  const body = packr.pack(h);
  const prefix = Buffer.alloc(20);
  prefix.write("LOCKSTEP", 0, "ascii");
  prefix.writeUInt32BE(version, 8);
  prefix.writeUInt32BE(body.length, 12);
  prefix.writeUInt32BE(crc32(body), 16);
  return concat([prefix, body, ...payloads.map(frame)]);
}

/** A recording damaged as a whole: its header, its entries (trees, order, bytes), then maybe its file bytes. */
function mutateLog(r: SeededRandom, h: LogHeader, es: LogEntry[]): Uint8Array {
  const tree = r.chance(0.25) ? mutateTree(r, copyTree(h)) : h;
  let raws: unknown[] = es.map(encodeEntry);
  for (let k = r.int(0, 3); k > 0 && raws.length > 0; k--) {
    const i = r.int(0, raws.length - 1);
    switch (r.int(0, 5)) {
      case 0:
      case 1:
        raws[i] = mutateTree(r, copyTree(raws[i]));
        break;
      case 2:
        raws.splice(i, 1);
        break;
      case 3:
        raws.splice(r.int(0, raws.length), 0, copyTree(raws[i]));
        break;
      case 4: {
        const j = r.int(0, raws.length - 1);
        [raws[i], raws[j]] = [raws[j], raws[i]];
        break;
      }
      case 5: {
        // a plausible lie: the same entry at another slice or count
        const e = copyTree(raws[i]);
        const field = r.int(1, 2);
        if (Array.isArray(e) && typeof e[field] === "number") e[field] = Math.max(0, e[field] + pick(r, [-1, 1, r.int(2, 50), 10 ** r.int(3, 15)]));
        raws[i] = e;
        break;
      }
    }
  }
  if (r.chance(0.1)) raws = raws.slice(0, r.int(0, raws.length));
  const payloads = raws.map((raw) => (r.chance(0.05) ? mutateBytes(r, packr.pack(raw)) : packr.pack(raw)));
  const file = logFile(tree, payloads, r.chance(0.02) ? r.int(0, 5) : logFormatVersion);
  return r.chance(0.3) ? mutateBytes(r, file) : file;
}

function smallCheckpoint(): SessionCheckpoint {
  return {
    machine: {
      icount: 123_456_789,
      counter: 123_456_789,
      devices: Uint8Array.from({ length: 3000 }, (_, i) => (i * 7) & 0xff),
      memory: new Uint8Array(65536).map((_, i) => (i >> 8) & 0xff),
      hidden: { kbd: [0x1e], mouse: [], ps2: { nextByteIsReady: false, nextByteIsAux: false, wheelMovement: 0, lastMousePacket: -1 }, uartInput: [[65, 66], [], [], []], fwPointer: 0 },
      diskNextId: 3,
    },
    clock: { baseMs: 1234.5, baseIcount: 123_000_000, msPerInstruction: 1e-5, lastReadMs: 1234.6, rng: [1, 2, 3, 4] },
    driver: { slice: 1200, halted: true, nextDeadlineMs: 3.25 },
  };
}

function wrapCheckpoint(gz: Uint8Array): Uint8Array {
  const head = Buffer.alloc(14);
  head.write("LSCKPT", 0, "ascii");
  head.writeUInt32BE(checkpointFormat, 6);
  head.writeUInt32BE(crc32(gz), 10);
  return concat([head, gz]);
}

const peerMessages: PeerMessage[] = [
  { type: "hello", epoch: 2, nodeId: "b", have: 12, join: true },
  { type: "header", epoch: 2, nodeId: "a", header, releasedThrough: 40, checkpoint: true },
  { type: "log", epoch: 3, first: 7, entries },
  { type: "ack", epoch: 3, have: 9, complete: 5, executed: 4, echo: 77 },
  { type: "heartbeat", epoch: 3, nodeId: "a", at: 1_700_000_000_123 },
  { type: "checkpoint", epoch: 2, first: 40, slice: 17, part: 0, parts: 3, data: new Uint8Array([9, 8, 7]), console: 1234, inputs: [["client-a", 7]], consoleTail: new Uint8Array([65, 66]) },
];

const consoleMessages = [
  encodeConsoleMessage({ type: "attach", clientId: "x", offset: 5 }),
  encodeConsoleMessage({ type: "input", seq: 1, data: new Uint8Array([65, 13]) }),
  encodeConsoleMessage({ type: "output", offset: 100, data: new TextEncoder().encode("tiny> ") }),
  encodeConsoleMessage({ type: "inack", seq: 4 }),
  encodeConsoleMessage({ type: "status", role: "backup", epoch: 2, live: true }),
];

const logCodes = [ErrorCode.logCorrupt, ErrorCode.logTruncated, ErrorCode.logVersion];
const wireCodes = Object.values(WireErrorCode);

// ------------------------------------------------------------------------------------ the cases

describe(`decoders fed damaged input (FUZZ_SEED=${seed})`, () => {
  it("the log file reader refuses every damaged log with a log error, or reads it", async () => {
    const path = join(dir, "case.lslog");
    const outcomes = await runCases("log-file", cases, logCodes, (r) => writeFileSync(path, mutateLog(r, header, entries)), (_, r) => {
      const reader = new LogReader(path, { allowTruncated: r.chance(0.5) });
      try {
        if (r.chance(0.3)) reader.findEnd();
        // a reader that never reaches the end of a finite file would be a hang
        for (let i = 0; reader.next(); i++) if (i > 1000) throw new Error("the reader does not advance");
      } finally {
        reader.close();
      }
    });
    expectReached(outcomes, ErrorCode.logCorrupt, ErrorCode.logTruncated);
  });

  it("decodeEntry refuses every damaged entry with LOCKSTEP_ERR_LOG_CORRUPT, or decodes it", async () => {
    const valid = entries.map((e) => packr.pack(encodeEntry(e)));
    await runCases(
      "entry",
      cases,
      [ErrorCode.logCorrupt],
      (r) => {
        try {
          return { raw: packr.unpack(mutateMessage(r, pick(r, valid))) as unknown };
        } catch {
          return undefined; // the frame reader refuses undecodable bytes itself
        }
      },
      (input, _, n) => input && decodeEntry(input.raw, `fuzz ${n}`),
    );
  });

  it("decodeCheckpoint refuses every damaged checkpoint with LOCKSTEP_ERR_CHECKPOINT_CORRUPT, or decodes it", async () => {
    const valid = smallCheckpoint();
    const encoded = await encodeCheckpoint(valid);
    const body = gunzipSync(encoded.subarray(14)); // after "LSCKPT", the format and the checksum
    const gz = gzipSync(body, { level: 1 });
    // a third as many: each case inflates a whole checkpoint (most of this file's time)
    const outcomes = await runCases(
      "checkpoint",
      Math.ceil(cases / 3),
      [ErrorCode.checkpointCorrupt],
      async (r) => {
        switch (r.int(0, 4)) {
          case 0: // the decoded tree, encoded again properly
            return encodeCheckpoint(mutateTree(r, copyTree(valid)) as SessionCheckpoint);
          case 1: // the body's bytes (meta and parts)
            return wrapCheckpoint(gzipSync(mutateBytes(r, body), { level: 1 }));
          case 2: // the gzip stream's bytes, its checksum made right
            return wrapCheckpoint(mutateBytes(r, gz));
          default: // the file's bytes
            return mutateBytes(r, encoded);
        }
      },
      (bytes, r) => decodeCheckpoint(bytes, r.chance(0.5) ? 1 : undefined),
    );
    expectReached(outcomes, ErrorCode.checkpointCorrupt);
  });

  it("decodePeerMessage refuses every damaged frame with a wire error, or decodes it", async () => {
    const valid = peerMessages.map(encodePeerMessage);
    const outcomes = await runCases("peer", cases, wireCodes, (r) => mutateMessage(r, pick(r, valid)), (bytes) => decodePeerMessage(bytes));
    expectReached(outcomes, WireErrorCode.malformed);
  });

  it("the console decoders refuse every damaged frame with a wire error, or decode it", async () => {
    await runCases(
      "console",
      cases,
      wireCodes,
      (r) => mutateMessage(r, pick(r, consoleMessages)),
      (bytes, r) => (r.chance(0.5) ? decodeConsoleClientMessage(bytes) : decodeConsoleServerMessage(bytes)),
    );
  });

  describe("a replay of a damaged recording of the tiny guest", () => {
    const digestEvery = 5;
    let recording: { header: LogHeader; entries: LogEntry[] };

    beforeAll(async () => {
      const recorded: LogEntry[] = [];
      const g = await GuestDriver.boot({ image: "tiny", digestEverySlices: digestEvery, onEntry: (e) => recorded.push(e) });
      try {
        g.runUntil(/tiny> /);
        g.command("ping", "pong");
        g.keys([0x1e, 0x9e]);
        g.runUntil("kbd 9E");
        g.command("write 3 41", "wrote");
        g.command("read 3", "sector");
        g.runSlices(20);
        g.recorder.powerOff();
      } finally {
        g.close();
      }
      recording = { header: headerFor("tiny", g.session.clock.params, digestEvery), entries: recorded };
    });

    /** Replays a log file as `lockstep replay` does, failing when it runs more slices than the log can justify. */
    async function replayFile(path: string): Promise<string> {
      const reader = new LogReader(path, { allowTruncated: true });
      try {
        const loaded = loadMachine("tiny");
        checkHeader(reader.header, loaded);
        const h = reader.header;
        const session = await MachineSession.open({ loaded, ...(h.disk ? { diskBytes: h.disk.bytes } : {}), clock: h.clock });
        try {
          let frames = 0;
          const replayer = new Replayer(session.driver, () => {
            const e = reader.next();
            if (e) frames++;
            return e;
          });
          for (;;) {
            const end = replayer.step(100);
            if (end) return end;
            // no two entries are more than digestEvery slices apart, nor power-on and the first
            if (session.driver.slice > (frames + 1) * h.digestEverySlices) throw new Error(`the replay ran ${session.driver.slice} slices on ${frames} entries`);
          }
        } finally {
          session.close();
        }
      } finally {
        reader.close();
      }
    }

    it("refuses every damaged recording with a log error or a divergence, or replays it, within the slices its log justifies", async () => {
      const path = join(dir, "replay-case.lslog");
      // undamaged, the recording replays to its end
      writeFileSync(path, logFile(recording.header, recording.entries.map((e) => packr.pack(encodeEntry(e)))));
      expect(await replayFile(path)).toBe("power-off");
      await runCases(
        "replay",
        replayCases,
        [...logCodes, ErrorCode.logMismatch, ErrorCode.divergence],
        (r) => writeFileSync(path, mutateLog(r, recording.header, recording.entries)),
        () => replayFile(path),
      );
    });
  });
});
