/**
 * ReadOnlyImage: a CD-ROM image (ISO) given to v86 as its `cdrom` buffer. Its contents never change
 * and both nodes hold the same file (its sha256 is in the machine config, so in the log header), so:
 *  - reads complete synchronously, at the instruction that asked: their data and their timing are
 *    a function of the guest's execution, and nothing of them is logged;
 *  - v86's save_state keeps only the size (v86's own SyncBuffer would copy the whole ISO into every
 *    checkpoint); a machine restored from a checkpoint is given the same file again;
 *  - a write (no guest writes an ATAPI CD) is refused by v86 before it gets here, and ignored here.
 */
export class ReadOnlyImage {
  readonly byteLength: number;
  onload: ((e: { buffer: ArrayBuffer }) => void) | undefined;
  onprogress: undefined;

  constructor(private readonly bytes: Uint8Array) {
    this.byteLength = bytes.byteLength;
  }

  load(): void {
    this.onload?.({ buffer: new ArrayBuffer(0) });
  }

  get(start: number, len: number, fn: (data: Uint8Array) => void): void {
    fn(this.bytes.slice(start, start + len));
  }

  get_and_cache(start: number, len: number, fn: (data: Uint8Array) => void): void {
    this.get(start, len, fn);
  }

  get_from_cache(start: number, len: number): Uint8Array {
    return this.bytes.slice(start, start + len);
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
