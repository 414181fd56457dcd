/** A bounded window of latency samples (ms) with percentiles, for status and benchmarks. */
export class LatencySamples {
  private samples: number[] = [];
  private next = 0;
  count = 0;

  constructor(private readonly capacity = 10_000) {}

  add(ms: number): void {
    if (this.samples.length < this.capacity) this.samples.push(ms);
    else this.samples[this.next] = ms;
    this.next = (this.next + 1) % this.capacity;
    this.count++;
  }

  summary(): { n: number; p50: number | null; p99: number | null; max: number | null } {
    if (this.samples.length === 0) return { n: 0, p50: null, p99: null, max: null };
    const s = [...this.samples].sort((a, b) => a - b);
    const at = (q: number) => Math.round(s[Math.min(s.length - 1, Math.floor(q * s.length))]! * 100) / 100;
    return { n: this.count, p50: at(0.5), p99: at(0.99), max: at(1) };
  }

  reset(): void {
    this.samples = [];
    this.next = 0;
    this.count = 0;
  }
}
