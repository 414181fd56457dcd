/**
 * ConsoleSessions: the console clients attached to a live primary, sans IO (part of the NodeCore).
 * Each session reads the console stream from its own byte offset and gets what the output rule has
 * released; each client's input carries sequence numbers and reaches the guest exactly once, in order:
 * what the guest already got is known from the log (the stream's applied input), what is on its way
 * to the machine from `queued`, and a resend of either is only acknowledged again.
 *
 * Input on its way to the machine is bounded (`inputInFlightBytesMax`); past it input is dropped and
 * the client, which has no ack for it, resends it.
 */
import type { ConsoleServerMessage } from "../wire/console-messages.js";
import type { ConsoleStream } from "./console-stream.js";

/** Console input bytes sent to the machine and not yet applied, at most. */
export const inputInFlightBytesMax = 64 * 1024;
/** Console output per message at most. */
const consoleChunkBytes = 64 * 1024;

export type ConsoleEffect =
  | { type: "console-send"; session: number; message: ConsoleServerMessage }
  | { type: "console-close"; session: number; code: number; reason: string }
  /** keys: PS/2 scancodes for the keyboard, not serial bytes. */
  | { type: "machine-input"; data: Uint8Array; source: { client: string; seq: number }; keys?: true }
  | { type: "log"; level: "info" | "warn"; msg: string; fields?: Record<string, unknown> };

interface Session {
  clientId: string | undefined;
  offset: number;
}

export class ConsoleSessions {
  private sessions = new Map<number, Session>();
  /** Highest input seq per client sent to the machine (not yet seen applied). */
  private queued = new Map<string, number>();
  private inFlightBytes = 0;
  /** Bytes of each input sent to the machine and not yet applied or refused, by `client seq`. */
  private inFlight = new Map<string, number>();

  constructor(private readonly stream: ConsoleStream) {}

  get size(): number {
    return this.sessions.size;
  }

  /** A client connected; `live`: this node serves consoles (otherwise it is told to try another). */
  open(session: number, status: { role: "primary" | "backup" | "halted"; epoch: number }): ConsoleEffect[] {
    const live = status.role === "primary";
    const effects: ConsoleEffect[] = [{ type: "console-send", session, message: { type: "status", ...status, live } }];
    if (!live) effects.push({ type: "console-close", session, code: 4001, reason: "not live" });
    else this.sessions.set(session, { clientId: undefined, offset: 0 });
    return effects;
  }

  close(session: number): void {
    this.sessions.delete(session);
  }

  attach(session: number, clientId: string, offset: number): ConsoleEffect[] {
    const c = this.sessions.get(session);
    if (!c) return [];
    const s = this.stream;
    if (offset < s.retainedFrom || offset > s.end) {
      this.sessions.delete(session);
      return [
        { type: "log", level: "warn", msg: "console attach at an offset this node cannot serve", fields: { clientId, offset } },
        { type: "console-close", session, code: 4002, reason: `offset ${offset} not available (have ${s.retainedFrom}..${s.end})` },
      ];
    }
    c.clientId = clientId;
    c.offset = offset;
    const effects: ConsoleEffect[] = [];
    const acked = s.ackedInput.get(clientId);
    if (acked) effects.push({ type: "console-send", session, message: { type: "inack", seq: acked } });
    effects.push(...this.pushOutput(session, c));
    return effects;
  }

  /** Console input: each (client, seq) reaches the guest exactly once, in order. */
  input(session: number, seq: number, data: Uint8Array, keys = false): ConsoleEffect[] {
    const c = this.sessions.get(session);
    if (!c || c.clientId === undefined) return [];
    const id = c.clientId;
    const known = Math.max(this.stream.appliedInput.get(id) ?? 0, this.queued.get(id) ?? 0);
    if (seq <= known) {
      // applied already (or on its way): only say so again
      const acked = this.stream.ackedInput.get(id) ?? 0;
      return seq <= acked ? [{ type: "console-send", session, message: { type: "inack", seq: acked } }] : [];
    }
    if (seq !== known + 1) return []; // a gap: the client resends in order
    if (this.inFlightBytes + data.length > inputInFlightBytesMax) return []; // the client resends
    this.inFlightBytes += data.length;
    this.inFlight.set(`${id} ${seq}`, data.length);
    this.queued.set(id, seq);
    return [{ type: "machine-input", data, source: { client: id, seq }, ...(keys ? { keys: true as const } : {}) }];
  }

  /** The machine applied input `source` (it is in the log now). */
  inputApplied(source: { client: string; seq: number }): void {
    this.settle(source);
  }

  /** The machine could not queue an input: the client resends it (its bytes are no longer on their way). */
  inputRefused(source: { client: string; seq: number }): void {
    this.settle(source);
    if ((this.queued.get(source.client) ?? 0) >= source.seq) this.queued.set(source.client, source.seq - 1);
  }

  private settle(source: { client: string; seq: number }): void {
    const key = `${source.client} ${source.seq}`;
    this.inFlightBytes = Math.max(0, this.inFlightBytes - (this.inFlight.get(key) ?? 0));
    this.inFlight.delete(key);
  }

  /** A new primary: nothing is on its way to its machine. */
  resetInput(): void {
    this.queued.clear();
    this.inFlightBytes = 0;
    this.inFlight.clear();
  }

  /** The output rule moved: released bytes and the input acks that became `due` go out. */
  released(due: Array<{ client: string; seq: number }>): ConsoleEffect[] {
    const effects: ConsoleEffect[] = [];
    for (const [session, c] of this.sessions) {
      if (c.clientId === undefined) continue;
      effects.push(...this.pushOutput(session, c));
      for (const a of due) if (a.client === c.clientId) effects.push({ type: "console-send", session, message: { type: "inack", seq: a.seq } });
    }
    return effects;
  }

  /** The node halted: every client is told so and let go. */
  closeAll(epoch: number): ConsoleEffect[] {
    const effects: ConsoleEffect[] = [];
    for (const session of this.sessions.keys()) {
      effects.push({ type: "console-send", session, message: { type: "status", role: "halted", epoch, live: false } });
      effects.push({ type: "console-close", session, code: 4001, reason: "halted" });
    }
    this.sessions.clear();
    return effects;
  }

  private pushOutput(session: number, c: Session): ConsoleEffect[] {
    const effects: ConsoleEffect[] = [];
    for (;;) {
      const chunk = this.stream.read(c.offset, consoleChunkBytes);
      if (!chunk || chunk.data.length === 0) return effects;
      effects.push({ type: "console-send", session, message: { type: "output", offset: chunk.offset, data: chunk.data } });
      c.offset += chunk.data.length;
    }
  }
}
