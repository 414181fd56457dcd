/** `lockstep log dump`: the header, then one line per entry with its byte offset (like `rr dump`). */
import { describeEntry, type LogEntry } from "../../hypervisor/event-log/log-entry.js";
import { LogReader } from "../../hypervisor/log-file.js";

export function logDumpCommand(file: string, allowTruncated: boolean): void {
  const reader = new LogReader(file, { allowTruncated });
  try {
    const h = reader.header;
    const out: string[] = [];
    out.push(`# lockstep log format ${h.format}, v86 ${h.v86}, lockstep ${h.lockstep}, recorded ${h.recordedAt}`);
    out.push(`# machine ${h.machine.name} (${h.machine.kind}, ${h.machine.memoryMiB} MiB)${h.machine.cmdline ? ` cmdline ${JSON.stringify(h.machine.cmdline)}` : ""}`);
    for (const [role, ref] of Object.entries(h.machine.files)) out.push(`#   ${role} ${ref.path} sha256 ${ref.sha256}`);
    if (h.machine.nic) out.push(`# nic ${h.machine.nic.type} ${h.machine.nic.mac}`);
    out.push(`# disk ${h.disk ? `${h.disk.bytes} bytes sha256 ${h.disk.sha256}${h.disk.fresh ? ` (fresh ${h.disk.fresh.format} ${h.disk.fresh.sizeMiB} MiB)` : ""}` : "none"}`);
    out.push(`# clock epoch ${new Date(h.clock.epochMs).toISOString()}, ${(1 / h.clock.msPerInstruction / 1000).toFixed(1)} MIPS nominal, seed ${h.clock.seed}; digest every ${h.digestEverySlices} slices${h.jit === false ? "; JIT off" : ""}`);
    process.stdout.write(out.join("\n") + "\n");
    let index = 0;
    let last: LogEntry | undefined;
    for (;;) {
      const offset = reader.offset;
      const entry = reader.next();
      if (!entry) break;
      process.stdout.write(`${String(index).padStart(6)} @${offset} ${describeEntry(entry)}\n`);
      last = entry;
      index++;
    }
    if (reader.truncatedAt !== undefined) process.stdout.write(`# truncated at offset ${reader.truncatedAt}\n`);
    if (!(last?.kind === "control" && last.action === "power-off")) process.stdout.write(`# ends at slice ${last?.slice ?? 0} without power-off (cut short)\n`);
  } finally {
    reader.close();
  }
}
