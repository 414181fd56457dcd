/**
 * SharedDisk: the disk both hosts of a pair share (a file or an NBD export), as one node uses it.
 * The primary opens it at power-on, making a fresh file in the shared directory when none is named;
 * a backup opens it only at takeover, retrying every second until it can. Once a node is primary,
 * the machine's disk requests go to it through a DiskScheduler that holds writes until the output
 * rule releases them; a failing backend is reported (the guest waits until it works again).
 *
 * For tests that check who wrote the disk in which epoch (partitions), LOCKSTEP_DISK_WRITE_LOG=FILE
 * makes the node append one JSON line per write, `{node, epoch, offset, bytes, atMs}` (host wall
 * time, comparable between the processes of one machine), in the same step as
 * the write leaves the process (after the lease check): a write not in that file was never made.
 */
import { appendFileSync, existsSync } from "node:fs";
import { resolve } from "node:path";
import type { Logger } from "pino";
import { makeBlankDisk } from "../../emulator/blank-disk.js";
import type { DiskRequest } from "../../emulator/bounce-disk.js";
import { writeDiskFile } from "../../emulator/disk-file.js";
import { checkBootSector, type MachineConfig } from "../../emulator/machine-config.js";
import { openDiskBackend, type DiskBackend } from "../../hypervisor/disk/disk-backend.js";
import { BackendDiskPort } from "../../hypervisor/disk/disk-port.js";
import type { MachineThread } from "../../hypervisor/machine-thread/machine-thread.js";

export class SharedDisk {
  private backend: DiskBackend | undefined;
  private port: BackendDiskPort | undefined;

  constructor(private readonly log: Logger) {}

  /**
   * Primary at power-on: opens the disk at `location` or, when none is given, the one named for the
   * machine in `sharedDir` (made fresh when missing). Its size and location go into the log header;
   * undefined when there is no disk.
   */
  async openAtPowerOn(config: MachineConfig, location: string | undefined, sharedDir: string | undefined): Promise<{ bytes: number; location: string | undefined } | undefined> {
    if (!location && config.disk && sharedDir) {
      location = resolve(sharedDir, `disk-${config.name}.img`);
      if (!existsSync(location)) {
        writeDiskFile(location, makeBlankDisk(config.disk));
        this.log.info({ disk: location, sizeMiB: config.disk.sizeMiB }, "made a fresh shared disk");
      }
    } else if (location && !/^nbd/.test(location)) location = resolve(location);
    if (location) this.backend = await openDiskBackend(location, { logger: this.log });
    // a machine that boots its hard disk: the disk must have a boot sector (an NBD export too, read here)
    if (this.backend && config.kind === "bios" && config.boot === "disk" && location) {
      try {
        checkBootSector(location, await this.backend.read(0, 512));
      } catch (e) {
        await this.backend.close();
        this.backend = undefined;
        throw e;
      }
    }
    return this.backend ? { bytes: this.backend.bytes, location } : undefined;
  }

  /** Backup at takeover: opens the disk, retrying every second; false when `givenUp` says to stop trying. */
  async openAtTakeover(location: string, givenUp: () => boolean): Promise<boolean> {
    for (let attempt = 0; !this.backend; attempt++) {
      try {
        this.backend = await openDiskBackend(location, { logger: this.log });
      } catch (e) {
        if (attempt === 0) this.log.error({ disk: location, reason: (e as Error).message }, "the shared disk cannot be opened: retrying every second before going live");
        await new Promise((r) => setTimeout(r, 1000));
        if (givenUp()) return false;
      }
    }
    return true;
  }

  /**
   * The node is primary: `machine`'s disk requests go to the disk from now on, and `reissue` (those
   * the old primary may not have completed) again. `onStall` hears the backend fail (a reason) and
   * work again (undefined).
   */
  attach(machine: MachineThread, reissue: DiskRequest[], onStall: (reason: string | undefined) => void, who?: { node: string; epoch: () => number }): void {
    const journal = process.env.LOCKSTEP_DISK_WRITE_LOG;
    const backend = this.backend && journal && who ? journaled(this.backend, journal, who) : this.backend;
    if (backend && !this.port) {
      this.port = new BackendDiskPort(
        backend,
        { queueDiskRead: (id, data) => machine.diskRead(id, data), queueDiskWrite: (id) => machine.diskWrite(id) },
        {
          holdWrites: true, // released by the output rule (release)
          wake: () => {}, // the machine thread wakes on every message
          onStall: (reason) => {
            if (reason) this.log.error({ reason, disk: backend.description }, "disk backend failing: the guest is paused until it works again");
            else this.log.info({ disk: backend.description }, "disk backend works again: the guest goes on");
            onStall(reason);
          },
        },
      );
    }
    if (this.port && reissue.length > 0) {
      // takeover: every request the old primary may not have completed is issued again
      this.log.warn({ requests: reissue.length, ids: reissue.map((r) => r.id) }, "re-issuing disk requests that were not completed");
      this.port.submit(reissue, machine.slice);
    }
  }

  submit(requests: DiskRequest[], slice: number): void {
    this.port?.submit(requests, slice);
  }

  /** The output rule: writes issued through `slice` may go to the disk. */
  release(slice: number, untilMs?: number): void {
    this.port?.release(slice, untilMs);
  }

  /** For the node's status: where the disk is and what its scheduler is doing; null before the node uses it. */
  status(): Record<string, unknown> | null {
    const s = this.port?.scheduler;
    return s ? { location: this.backend!.description, outstanding: s.outstanding, heldWrites: s.heldWrites, stalled: s.stalled ?? null, ...s.totals } : null;
  }

  /** No request goes to the disk any more (a halted node's disk belongs to the new primary). */
  stop(): void {
    this.port?.scheduler.close();
  }

  async close(): Promise<void> {
    this.stop();
    await this.backend?.close().catch(() => {});
  }
}

/** The backend with every write that starts appended to `file` (see LOCKSTEP_DISK_WRITE_LOG above). */
function journaled(backend: DiskBackend, file: string, who: { node: string; epoch: () => number }): DiskBackend {
  return {
    description: backend.description,
    bytes: backend.bytes,
    read: (offset, length) => backend.read(offset, length),
    write: (offset, data, mayStart) =>
      backend.write(offset, data, () => {
        const ok = mayStart?.() ?? true;
        if (ok) appendFileSync(file, JSON.stringify({ node: who.node, epoch: who.epoch(), offset, bytes: data.length, atMs: Date.now() }) + "\n");
        return ok;
      }),
    close: () => backend.close(),
  };
}
