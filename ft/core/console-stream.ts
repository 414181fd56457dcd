/**
 * ConsoleStream: the guest's serial output as a byte stream with absolute offsets, held back by the
 * output rule. Bytes produced in slice k are appended with k; `release(slice)` lets everything of
 * slices up to it leave. Primary and backup both append (the backup computes the same bytes and
 * keeps their offsets), so after a takeover the new primary can serve a reconnecting client from
 * the offset it reached. The newest `retainBytesMax` bytes are kept for such resumes.
 *
 * Console input acknowledgements ride the same rule: input applied at boundary k is acknowledged
 * to its client only once slice k+1 is released. (A progress marker for boundary k is written right
 * after slice k ran, before any input applied at boundary k; the first marker after that input is
 * the one for k+1.) The input is then in the backup's log, so it is applied exactly once whoever is
 * live.
 */
/**
 * Console clients whose applied input is remembered at most. The oldest (by their last input) whose
 * input is all acknowledged are forgotten beyond it, so the list a checkpoint carries stays bounded
 * however many clients ever typed. A forgotten client could only have input applied twice if it
 * resent input whose acknowledgement it never got while this many other clients typed since.
 */
export const appliedClientsMax = 1000;

export interface StreamChunk {
  offset: number;
  data: Uint8Array;
}

export class ConsoleStream {
  private chunks: Array<{ slice: number; offset: number; data: Uint8Array }> = [];
  /** Total bytes appended. */
  end = 0;
  /** Bytes that may leave. */
  released = 0;
  private inacks: Array<{ slice: number; client: string; seq: number }> = [];
  /** Index of the first chunk not yet wholly released. */
  private releaseIndex = 0;
  /** Highest acknowledged input seq per client. */
  readonly ackedInput = new Map<string, number>();
  /** Highest applied input seq per client (from the log: what the guest has received). */
  readonly appliedInput = new Map<string, number>();

  constructor(private readonly retainBytesMax = 1 << 20) {}

  append(slice: number, data: Uint8Array): void {
    if (data.length === 0) return;
    this.chunks.push({ slice, offset: this.end, data });
    this.end += data.length;
    this.trim();
  }

  /**
   * Starts the stream at `offset` (a backup that joined from a checkpoint: the output before it was
   * released by the primary) with the console input the machine had already applied. `tail` is the
   * primary's released output just before `offset`: kept, so that a client that was behind when its
   * node died can still be served from this node.
   */
  startAt(offset: number, applied: Array<[string, number]>, tail: Uint8Array = new Uint8Array(0)): void {
    if (this.end !== 0) throw new Error("ConsoleStream.startAt: the stream is not empty");
    if (tail.length > offset) throw new Error("ConsoleStream.startAt: the tail is longer than the stream");
    if (tail.length > 0) this.chunks.push({ slice: -1, offset: offset - tail.length, data: tail });
    this.releaseIndex = this.chunks.length;
    this.end = this.released = offset;
    for (const [client, seq] of applied) {
      this.appliedInput.set(client, seq);
      this.ackedInput.set(client, seq);
    }
  }

  /** An input (client, seq) was applied at boundary `boundary`. */
  inputApplied(boundary: number, client: string, seq: number): void {
    const applied = this.appliedInput.get(client) ?? 0;
    // re-inserted: the map's order is the order of the clients' latest input
    this.appliedInput.delete(client);
    this.appliedInput.set(client, Math.max(seq, applied));
    this.inacks.push({ slice: boundary + 1, client, seq });
    if (this.appliedInput.size > appliedClientsMax) this.forgetOldClients();
  }

  private forgetOldClients(): void {
    for (const [client, seq] of this.appliedInput) {
      if (this.appliedInput.size <= appliedClientsMax) return;
      if ((this.ackedInput.get(client) ?? 0) < seq) continue; // an acknowledgement is still due
      this.appliedInput.delete(client);
      this.ackedInput.delete(client);
    }
  }

  /** Releases output of slices <= `slice`; returns input acknowledgements that became due. */
  release(slice: number): Array<{ client: string; seq: number }> {
    while (this.releaseIndex < this.chunks.length) {
      const c = this.chunks[this.releaseIndex]!;
      if (c.slice > slice) break;
      this.released = c.offset + c.data.length;
      this.releaseIndex++;
    }
    this.trim();
    const due: Array<{ client: string; seq: number }> = [];
    while (this.inacks.length > 0 && this.inacks[0]!.slice <= slice) {
      const a = this.inacks.shift()!;
      if (a.seq > (this.ackedInput.get(a.client) ?? 0)) {
        this.ackedInput.set(a.client, a.seq);
        due.push({ client: a.client, seq: a.seq });
      }
    }
    return due;
  }

  /** Released bytes from `offset` on (as much as is retained), or undefined if `offset` was trimmed. */
  read(offset: number, maxBytes = 256 * 1024): StreamChunk | undefined {
    if (offset >= this.released) return { offset, data: new Uint8Array(0) };
    const first = this.chunks[0];
    if (!first || offset < first.offset) return undefined;
    const parts: Uint8Array[] = [];
    let at = offset;
    let total = 0;
    // binary search for the chunk holding `offset`
    let lo = 0;
    let hi = this.chunks.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.chunks[mid]!.offset <= offset) lo = mid;
      else hi = mid - 1;
    }
    for (let i = lo; i < this.chunks.length; i++) {
      const c = this.chunks[i]!;
      const cEnd = c.offset + c.data.length;
      if (cEnd <= at) continue;
      if (c.offset >= this.released || total >= maxBytes) break;
      const from = at - c.offset;
      const to = Math.min(c.data.length, this.released - c.offset, from + (maxBytes - total));
      parts.push(c.data.subarray(from, to));
      total += to - from;
      at = c.offset + to;
    }
    const data = new Uint8Array(total);
    let p = 0;
    for (const part of parts) {
      data.set(part, p);
      p += part.length;
    }
    return { offset, data };
  }

  /** The newest released bytes, at most `maxBytes` of them (they end at `released`). */
  releasedTail(maxBytes: number): Uint8Array {
    const from = Math.max(this.retainedFrom, this.released - maxBytes);
    return this.read(from, this.released - from)?.data ?? new Uint8Array(0);
  }

  /** The oldest offset still retained. */
  get retainedFrom(): number {
    return this.chunks[0]?.offset ?? this.end;
  }

  private trim(): void {
    while (this.chunks.length > 1 && this.end - this.chunks[0]!.offset - this.chunks[0]!.data.length >= this.retainBytesMax && this.chunks[0]!.offset + this.chunks[0]!.data.length <= this.released) {
      this.chunks.shift();
      this.releaseIndex--;
    }
  }
}
