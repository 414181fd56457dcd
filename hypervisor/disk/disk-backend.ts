/**
 * Disk backends: where the primary's bounce buffers go. Asynchronous reads and writes of whole
 * sectors at byte offsets; a write's promise resolves once the storage accepted it (for a file:
 * `pwrite` returned, so the data survives the death of this process). Only the live primary ever
 * holds a backend open: the backup and the offline replayer get disk data from the log.
 *
 *   file    a disk image on a directory both hosts share (the default)
 *   nbd     an NBD export (newstyle protocol, e.g. nbdkit) for hosts that share no filesystem
 *   memory  an image in this process (run/record of a fresh disk; tests)
 */
import { constants, writeSync } from "node:fs";
import { open, stat, type FileHandle } from "node:fs/promises";
import { ErrorCode, LockstepError } from "../../emulator/lockstep-error.js";
import type { NbdOptions } from "./nbd-backend.js";

export interface DiskBackend {
  /** For logs and errors, e.g. "file /shared/disk.img" or "nbd://127.0.0.1:10809/". */
  readonly description: string;
  readonly bytes: number;
  read(offset: number, length: number): Promise<Uint8Array>;
  /**
   * `mayStart` (the disk lease) is asked at the last moment before the data leaves this process
   * — for a file, in the same synchronous step as the `pwrite` — and if it says no the write is
   * not made and the promise rejects with WriteNotStarted. A process stopped between an earlier
   * check and a write queued on a thread pool would otherwise write, on waking, whenever it woke.
   */
  write(offset: number, data: Uint8Array, mayStart?: () => boolean): Promise<void>;
  close(): Promise<void>;
}

/** A write whose lease had ended when it was about to start: nothing was written; not a disk failure. */
export class WriteNotStarted extends Error {
  constructor() {
    super("write not started: the disk lease had ended");
  }
}

export const sectorBytes = 512;

export class MemoryDiskBackend implements DiskBackend {
  readonly description = "memory";
  constructor(readonly image: Uint8Array) {}
  get bytes(): number {
    return this.image.byteLength;
  }
  async read(offset: number, length: number): Promise<Uint8Array> {
    return this.image.slice(offset, offset + length);
  }
  async write(offset: number, data: Uint8Array, mayStart?: () => boolean): Promise<void> {
    if (mayStart && !mayStart()) throw new WriteNotStarted();
    this.image.set(data, offset);
  }
  async close(): Promise<void> {}
}

export class FileDiskBackend implements DiskBackend {
  private constructor(
    private readonly handle: FileHandle,
    readonly path: string,
    readonly bytes: number,
  ) {}

  get description(): string {
    return `file ${this.path}`;
  }

  /** Opens an existing image for reading and writing; a clear error if it is missing, read-only or not whole sectors. */
  static async open(path: string, options: { readOnly?: boolean } = {}): Promise<FileDiskBackend> {
    const fail = (code: ErrorCode, why: string, hint?: string): never => {
      throw new LockstepError(code, `Disk ${path} ${why}`, hint);
    };
    let size = 0;
    try {
      const st = await stat(path);
      if (!st.isFile()) fail(ErrorCode.diskUnreadable, "is not a regular file");
      size = st.size;
    } catch (e) {
      if (e instanceof LockstepError) throw e;
      fail(ErrorCode.diskUnreadable, `cannot be read: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (size === 0 || size % sectorBytes !== 0) fail(ErrorCode.diskUnreadable, `has ${size} bytes, not a whole number of 512-byte sectors`);
    let handle: FileHandle;
    try {
      handle = await open(path, options.readOnly ? constants.O_RDONLY : constants.O_RDWR);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EROFS" || code === "EPERM") {
        fail(ErrorCode.diskUnwritable, `cannot be opened for writing (${code})`, "the guest's writes must reach the shared disk: make it writable");
      }
      fail(ErrorCode.diskUnreadable, `cannot be opened: ${code ?? (e as Error).message}`);
    }
    return new FileDiskBackend(handle!, path, size);
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.handle.read(out, done, length - done, offset + done);
      if (bytesRead === 0) throw new Error(`short read at ${offset + done}: the disk file shrank`);
      done += bytesRead;
    }
    return out;
  }

  async write(offset: number, data: Uint8Array, mayStart?: () => boolean): Promise<void> {
    let done = 0;
    if (mayStart) {
      // under a lease: the check and the pwrite in one synchronous step, on this thread (a write
      // handed to the thread pool could start whenever a stopped process wakes)
      if (!mayStart()) throw new WriteNotStarted();
      while (done < data.length) done += writeSync(this.handle.fd, data, done, data.length - done, offset + done);
      return;
    }
    while (done < data.length) {
      const { bytesWritten } = await this.handle.write(data, done, data.length - done, offset + done);
      done += bytesWritten;
    }
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

/**
 * Opens a backend by location: a file path, or an NBD URL (nbd://host[:port]/export,
 * nbd+unix:///export?socket=PATH), which logs its lost connections and reconnects to `options.logger`.
 */
export async function openDiskBackend(location: string, options: NbdOptions): Promise<DiskBackend> {
  if (/^nbd(\+unix)?:\/\//.test(location)) {
    const { NbdDiskBackend } = await import("./nbd-backend.js");
    return NbdDiskBackend.connect(location, options);
  }
  return FileDiskBackend.open(location);
}
