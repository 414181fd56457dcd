/**
 * The Prometheus metrics a node serves on /metrics: gauges read at scrape time from the node core
 * and the machine's shared counters.
 */
import { Gauge, Registry } from "prom-client";
import type { NodeCore } from "../core/node-core.js";
import type { MachineThread } from "../../hypervisor/machine-thread/machine-thread.js";

export function nodeMetrics(core: NodeCore, machine: () => MachineThread | undefined): Registry {
  const registry = new Registry();
  const gauge = (name: string, help: string, value: () => number | undefined) =>
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        const v = value();
        if (v !== undefined) this.set(v);
      },
    });
  gauge("lockstep_epoch", "Current epoch", () => core.epoch);
  gauge("lockstep_is_primary", "1 when this node is the live primary", () => (core.role === "primary" ? 1 : 0));
  gauge("lockstep_arbiter_held", "A primary on a leased arbiter (etcd): 1 while it holds its epoch, 0 while it waits for a renewal", () => {
    const held = core.holdsEpoch;
    return held === null ? undefined : Number(held);
  });
  gauge("lockstep_slice", "Slices executed", () => machine()?.slice);
  gauge("lockstep_instructions", "Instructions executed", () => machine()?.icount);
  gauge("lockstep_backup_lag_slices", "Primary slices not yet executed by the backup", () => core.primary?.lagSlices(machine()?.slice ?? 0));
  gauge("lockstep_log_entries", "Entries in the log", () => core.primary?.logLength ?? core.backup?.have);
  gauge("lockstep_console_bytes", "Console output bytes produced", () => core.stream.end);
  gauge("lockstep_console_released_bytes", "Console output bytes released", () => core.stream.released);
  gauge("lockstep_output_delay_p99_ms", "Output-rule delay, 99th percentile over the recent window", () => core.outputDelay.summary().p99 ?? undefined);
  gauge("lockstep_backup_lag_p99_ms", "Backup lag, 99th percentile over the recent window", () => core.backupLag.summary().p99 ?? undefined);
  return registry;
}

/** This process's memory (MiB): resident set (the machine thread included), the main thread's JS heap, and buffers outside it. */
export function processMemoryMiB(): { rss: number; heapUsed: number; external: number; arrayBuffers: number } {
  const m = process.memoryUsage();
  const mib = (n: number) => Math.round((n / 2 ** 20) * 10) / 10;
  return { rss: mib(m.rss), heapUsed: mib(m.heapUsed), external: mib(m.external), arrayBuffers: mib(m.arrayBuffers) };
}
