/**
 * ReadOnlyImage: a CD-ROM image (ISO) given to v86 as its `cdrom` buffer, read from its file as the
 * guest asks (an ISO may be gigabytes: more than a buffer can hold, and nothing to copy into every
 * thread). Its contents never change and both nodes hold the same file (its sha256 is in the
 * machine config, so in the log header; checked when the machine is loaded), so:
 *  - reads complete synchronously, at the instruction that asked: their data and their timing are
 *    a function of the guest's execution, and nothing of them is logged;
 *  - v86's save_state keeps only the size (v86's own SyncBuffer would copy the whole ISO into every
 *    checkpoint); a machine restored from a checkpoint is given the same file again;
 *  - a write (no guest writes an ATAPI CD) is refused by v86 before it gets here, and ignored here.
 */
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

export class ReadOnlyImage {
  readonly byteLength: number;
  onload: ((e: { buffer: ArrayBuffer }) => void) | undefined;
  onprogress: undefined;
  private fd: number | undefined;

  constructor(path: string) {
    this.fd = openSync(path, "r");
    this.byteLength = fstatSync(this.fd).size;
  }

  /** The machine is gone: the file is closed (a read after this returns zeros). */
  close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private read(start: number, len: number): Uint8Array {
    const out = new Uint8Array(Math.max(0, Math.min(len, this.byteLength - start)));
    for (let at = 0; this.fd !== undefined && at < out.length; ) {
      const n = readSync(this.fd, out, at, out.length - at, start + at);
      if (n === 0) break;
      at += n;
    }
    return out;
  }

  load(): void {
    this.onload?.({ buffer: new ArrayBuffer(0) });
  }

  get(start: number, len: number, fn: (data: Uint8Array) => void): void {
    fn(this.read(start, len));
  }

  get_and_cache(start: number, len: number, fn: (data: Uint8Array) => void): void {
    this.get(start, len, fn);
  }

  get_from_cache(start: number, len: number): Uint8Array {
    return this.read(start, len);
  }

  set(_start: number, _slice: Uint8Array, fn: () => void): void {
    fn();
  }

  get_buffer(fn: (buffer: ArrayBuffer | undefined) => void): void {
    fn(undefined);
  }

  get_state(): unknown[] {
    return [this.byteLength];
  }

  set_state(): void {}
}
