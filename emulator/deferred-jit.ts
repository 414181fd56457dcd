/**
 * Deferred-sync JIT. Stock v86 compiles generated wasm with an asynchronous
 * `WebAssembly.instantiate`, so the moment compiled code takes over (and with it where a slice ends,
 * which the guest can observe through time) depends on host timing. Here a compile request is
 * compiled synchronously when v86 asks for it, queued, and published only after the slice returns,
 * so compiled code appears at a slice boundary that is a pure function of the machine's history.
 * Publishing inside `codegen_finalize` is not possible: `codegen_finalize_finished` there panics on
 * the JIT state lock.
 */

/** The parts of v86's CPU object this module touches. */
export interface JitCpu {
  wasm_memory: WebAssembly.Memory;
  jit_imports: WebAssembly.Imports[string];
  wm: { wasm_table: WebAssembly.Table };
  codegen_finalize: (index: number, start: number, stateFlags: number, ptr: number, len: number) => void;
  codegen_finalize_finished: (index: number, start: number, stateFlags: number) => void;
}

/** v86's WASM_TABLE_OFFSET: generated functions live at table index + 1024. */
export const jitTableOffset = 1024;

interface PendingCompile {
  index: number;
  start: number;
  stateFlags: number;
  fn: WebAssembly.ExportValue;
}

export class DeferredJit {
  private pending: PendingCompile[] = [];
  /** The module behind every live table slot, kept for checkpoints (re-instantiation elsewhere). */
  readonly modules = new Map<number, WebAssembly.Module>();
  compiles = 0;

  constructor(private readonly cpu: JitCpu) {
    cpu.codegen_finalize = (index, start, stateFlags, ptr, len) => {
      const code = new Uint8Array(cpu.wasm_memory.buffer, ptr >>> 0, len >>> 0);
      const module = new WebAssembly.Module(code);
      const instance = new WebAssembly.Instance(module, { e: cpu.jit_imports });
      this.modules.set(index, module);
      this.pending.push({ index, start, stateFlags, fn: instance.exports.f! });
      this.compiles++;
    };
  }

  get pendingCount(): number {
    return this.pending.length;
  }

  /** Publishes every compile requested during the last slice. Call between slices only. */
  publish(): void {
    if (this.pending.length === 0) return;
    const batch = this.pending;
    this.pending = [];
    for (const p of batch) {
      this.cpu.wm.wasm_table.set(p.index + jitTableOffset, p.fn as Function);
      this.cpu.codegen_finalize_finished(p.index, p.start, p.stateFlags);
    }
  }
}
