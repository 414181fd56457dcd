/** Typed-array views of wasm memory that survive its growth. */
type TypedArrayOf<T> = { new (buffer: ArrayBuffer, byteOffset: number, length: number): T };

/**
 * A typed array over `memory` at a fixed place that stays valid when the memory grows (growing
 * detaches the old ArrayBuffer): every access builds the view over the current buffer. This is how
 * v86 keeps its own register views; functions come bound to the fresh view.
 */
export function liveView<T extends object>(Type: TypedArrayOf<T>, memory: WebAssembly.Memory, byteOffset: number, length: number): T {
  const view = () => new Type(memory.buffer, byteOffset, length);
  return new Proxy({} as T, {
    get: (_, key) => {
      const v = view();
      const value = Reflect.get(v, key) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(v) : value;
    },
    set: (_, key, value) => Reflect.set(view(), key, value),
  });
}
