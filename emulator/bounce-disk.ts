/**
 * BounceDisk: the guest's hard disk (hda) as v86 sees it, with no storage behind it. v86's IDE
 * controller asks its buffer for reads (`get`) and writes (`set`) and continues when the callback
 * runs; a BounceDisk never runs a callback by itself. It records each request — a write's data is
 * copied into a bounce buffer at once, as the guest's memory may change — and waits for
 * `complete(id)`, which the slice driver calls at a slice boundary when the log says so. Whoever
 * drives the machine decides where the data comes from: the primary from its disk backend, the
 * backup and the offline replayer from the log. The guest's path never touches storage.
 *
 * Request ids count from 1 in the order the guest issued them, so they are the same on every
 * machine that executes the same log.
 *
 * v86 duck-types disk buffers: an object with `get`, `set` and `load` is used as is (starter.js).
 */
export interface DiskRequest {
  id: number;
  op: "read" | "write";
  /** Byte offset on the disk. */
  offset: number;
  length: number;
  /** A write's data (the bounce buffer). */
  data?: Uint8Array;
}

type ReadCallback = (data: Uint8Array) => void;

export class DiskCompletionError extends Error {}

interface Waiting {
  request: DiskRequest;
  callback: ReadCallback | (() => void);
  /** A read's data so far. */
  buffer?: Uint8Array;
  filled?: number;
}

export class BounceDisk {
  /** v86 reads the size from here. */
  readonly byteLength: number;
  onload: ((e: unknown) => void) | undefined;
  /** The id the next request gets (carried by checkpoints). */
  nextRequestId = 1;
  private readonly waiting = new Map<number, Waiting>();
  private issued: DiskRequest[] = [];

  constructor(bytes: number) {
    if (!Number.isSafeInteger(bytes) || bytes <= 0 || bytes % 512 !== 0) throw new Error(`BounceDisk: bad size ${bytes}`);
    this.byteLength = bytes;
  }

  // ---- v86's side (called by ide.js while a slice runs) ----

  load(): void {
    this.onload?.({});
  }

  get(start: number, length: number, callback: ReadCallback): void {
    this.request({ op: "read", offset: start, length }, callback);
  }

  set(start: number, data: Uint8Array, callback: () => void): void {
    this.request({ op: "write", offset: start, length: data.byteLength, data: data.slice() }, callback);
  }

  /**
   * At construction v86 prefetches the first sector to guess the CHS geometry from an MBR. The
   * disk's contents must not shape the machine (a replay has no disk), so the prefetch sees zeros
   * and the geometry always comes from the size. (Guests address the disk by LBA anyway.)
   */
  get_and_cache(_start: number, length: number, callback: ReadCallback): void {
    callback(new Uint8Array(length));
  }

  get_from_cache(): undefined {
    return undefined;
  }

  get_buffer(callback: (buffer: ArrayBuffer | undefined) => void): void {
    callback(undefined);
  }

  /** In v86's save_state: only the size (requests in flight are the hypervisor's business). */
  get_state(): unknown[] {
    return [this.byteLength];
  }

  set_state(): void {}

  // ---- the hypervisor's side (between slices only) ----

  get hasIssued(): boolean {
    return this.issued.length > 0;
  }

  /** Requests issued since the last call, in order. */
  takeIssued(): DiskRequest[] {
    const out = this.issued;
    this.issued = [];
    return out;
  }

  /** How many requests are issued and not completed. */
  get inFlight(): number {
    return this.waiting.size;
  }

  /** Requests issued and not completed, in order. */
  pending(): DiskRequest[] {
    return [...this.waiting.values()].map((w) => w.request);
  }

  /** Bytes of pending read `id` supplied so far (0 if it is not a pending read). */
  readFilled(id: number): number {
    return this.waiting.get(id)?.filled ?? 0;
  }

  /**
   * Supplies bytes [at, at + data.length) of read request `id`; the read completes (the guest's
   * controller gets its data) with the part that fills it. Parts come in order. Throws
   * DiskCompletionError when the log and the guest disagree.
   */
  supplyRead(id: number, at: number, data: Uint8Array): void {
    const w = this.waiting.get(id);
    if (!w) throw new DiskCompletionError(`disk request ${id} is not pending`);
    const { request } = w;
    if (request.op !== "read") throw new DiskCompletionError(`disk request ${id} is a write, the log has read data for it`);
    const filled = w.filled ?? 0;
    if (at !== filled || at + data.byteLength > request.length) {
      throw new DiskCompletionError(`disk read ${id} of ${request.length} bytes has ${filled} so far; the log supplies [${at}, ${at + data.byteLength})`);
    }
    w.buffer ??= new Uint8Array(request.length);
    w.buffer.set(data, at);
    w.filled = at + data.byteLength;
    if (w.filled === request.length) {
      this.waiting.delete(id);
      (w.callback as ReadCallback)(w.buffer);
    }
  }

  /** Completes write request `id`. */
  completeWrite(id: number): void {
    const w = this.waiting.get(id);
    if (!w) throw new DiskCompletionError(`disk request ${id} is not pending`);
    if (w.request.op !== "write") throw new DiskCompletionError(`disk request ${id} is a read, the log completes it as a write`);
    this.waiting.delete(id);
    (w.callback as () => void)();
  }

  private request(r: Omit<DiskRequest, "id">, callback: ReadCallback | (() => void)): void {
    const request: DiskRequest = { id: this.nextRequestId++, ...r };
    this.waiting.set(request.id, { request, callback });
    this.issued.push(request);
  }
}
