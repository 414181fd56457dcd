/**
 * The gdb remote serial protocol over TCP, for a recording under a ReplayDebugger: gdb (i386)
 * attaches with `target remote HOST:PORT` and reads registers and memory, sets software
 * breakpoints, steps and continues — forwards and, with `reverse-stepi` / `reverse-continue`,
 * backwards. Nothing is written to the guest: `G`, `P`, `M` and `X` are refused.
 *
 * Packets: `$data#checksum`, acknowledged with `+` until gdb asks for no-ack mode. Stop replies:
 * `S05` after a step, `T05swbreak:;` at a breakpoint, `T05replaylog:end;` / `T05replaylog:begin;`
 * at the ends of the recording (gdb then says there is no more history). Errors: `E01` (refused),
 * `E14` (an address the guest's page tables do not map).
 */
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Registers } from "../../emulator/machine-view.js";
import type { ReplayDebugger, Stop } from "../../hypervisor/replay-debugger.js";

/** i386 registers in gdb's order, as the `g` packet carries them (32 bits each, little-endian). */
const gdbRegisters = ["eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", "eip", "eflags", "cs", "ss", "ds", "es", "fs", "gs"] as const;

const hex32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n >>> 0);
  return b.toString("hex");
};

export function checksum(data: string): string {
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum = (sum + data.charCodeAt(i)) & 0xff;
  return sum.toString(16).padStart(2, "0");
}

function stopReply(s: Stop): string {
  switch (s) {
    case "step":
      return "S05";
    case "breakpoint":
      return "T05swbreak:;";
    case "end":
      return "T05replaylog:end;";
    case "begin":
      return "T05replaylog:begin;";
  }
}

/** Answers one packet (without its framing); undefined: close the connection after `reply`. */
export async function answer(d: ReplayDebugger, packet: string): Promise<{ reply: string; close?: true }> {
  const registers = (): Registers => d.registers();
  if (packet.startsWith("qSupported")) return { reply: "PacketSize=4000;QStartNoAckMode+;swbreak+;ReverseStep+;ReverseContinue+" };
  if (packet === "QStartNoAckMode") return { reply: "OK" };
  if (packet === "?") return { reply: "S05" };
  if (packet === "qAttached") return { reply: "1" };
  if (packet === "qC") return { reply: "QC1" };
  if (packet === "qfThreadInfo") return { reply: "m1" };
  if (packet === "qsThreadInfo") return { reply: "l" };
  if (packet.startsWith("H")) return { reply: "OK" };
  if (packet.startsWith("T")) return { reply: "OK" }; // the one thread is alive
  if (packet === "g") {
    const r = registers();
    return { reply: gdbRegisters.map((name) => hex32(r[name])).join("") };
  }
  if (packet.startsWith("p")) {
    const n = parseInt(packet.slice(1), 16);
    const name = gdbRegisters[n];
    return { reply: name ? hex32(registers()[name]) : "E01" };
  }
  if (packet.startsWith("m")) {
    const [a, l] = packet.slice(1).split(",");
    const address = parseInt(a ?? "", 16);
    const length = parseInt(l ?? "", 16);
    if (!Number.isFinite(address) || !Number.isFinite(length) || length > 0x10000) return { reply: "E01" };
    try {
      return { reply: Buffer.from(d.readMemory(address, length)).toString("hex") };
    } catch {
      return { reply: "E14" };
    }
  }
  if (packet.startsWith("qRcmd,")) {
    // `monitor where`: the position in the recording (as rr's `when`)
    const command = Buffer.from(packet.slice(6), "hex").toString().trim();
    if (command !== "where") return { reply: Buffer.from(`unknown monitor command ${JSON.stringify(command)} (there is: where)\n`).toString("hex") };
    const p = d.position;
    return { reply: Buffer.from(`slice ${p.slice} instruction ${p.instruction}\n`).toString("hex") };
  }
  if (/^[GPMX]/.test(packet)) return { reply: "E01" }; // a recording is not changed
  const bp = /^([Zz])([01]),([0-9a-fA-F]+),/.exec(packet);
  if (bp) {
    const address = parseInt(bp[3]!, 16) >>> 0;
    if (bp[1] === "Z") d.breakpoints.add(address);
    else d.breakpoints.delete(address);
    return { reply: "OK" };
  }
  if (packet === "s" || packet.startsWith("s")) return { reply: stopReply(await d.stepi()) };
  if (packet === "c" || packet.startsWith("c")) return { reply: stopReply(await d.cont()) };
  if (packet === "bs") return { reply: stopReply(await d.reverseStepi()) };
  if (packet === "bc") return { reply: stopReply(await d.reverseCont()) };
  if (packet.startsWith("D")) return { reply: "OK", close: true };
  if (packet === "k") return { reply: "", close: true };
  return { reply: "" }; // not supported: gdb falls back
}

/**
 * Serves gdb on `port` (0: a free one) until the first client detaches or kills the session.
 * Resolves with the port once listening; `done` resolves when the session is over.
 */
export async function serveGdb(d: ReplayDebugger, host: string, port: number, log: Logger): Promise<{ port: number; done: Promise<void>; server: Server }> {
  let finish!: () => void;
  const done = new Promise<void>((r) => (finish = r));
  const server = createServer((socket) => {
    server.close(); // one debugger at a time
    serveConnection(d, socket, log).finally(() => finish());
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, () => resolve());
  });
  return { port: (server.address() as { port: number }).port, done, server };
}

async function serveConnection(d: ReplayDebugger, socket: Socket, log: Logger): Promise<void> {
  let buffer = "";
  let acks = true;
  let queue = Promise.resolve();
  let closed = false;
  const send = (reply: string) => {
    if (!closed) socket.write(`$${reply}#${checksum(reply)}`);
  };
  await new Promise<void>((resolve) => {
    socket.on("close", () => {
      closed = true;
      resolve();
    });
    socket.on("error", () => {});
    socket.on("data", (chunk) => {
      buffer += chunk.toString("latin1");
      for (;;) {
        buffer = buffer.replace(/^[+-]+/, "");
        if (buffer.startsWith("\x03")) {
          buffer = buffer.slice(1); // an interrupt: every motion here ends by itself
          continue;
        }
        const m = /^\$([^#]*)#([0-9a-fA-F]{2})/.exec(buffer);
        if (!m) {
          const start = buffer.indexOf("$");
          buffer = start > 0 ? buffer.slice(start) : buffer;
          break;
        }
        buffer = buffer.slice(m[0].length);
        const packet = m[1]!;
        if (acks) socket.write(checksum(packet) === m[2]!.toLowerCase() ? "+" : "-");
        if (checksum(packet) !== m[2]!.toLowerCase()) continue;
        queue = queue.then(async () => {
          let a: { reply: string; close?: true };
          try {
            a = await answer(d, packet);
          } catch (e) {
            log.warn({ packet, err: (e as Error).message }, "gdb request failed");
            a = { reply: "E01" };
          }
          send(a.reply);
          if (packet === "QStartNoAckMode") acks = false;
          if (a.close) socket.end();
        });
      }
    });
  });
  await queue;
}
