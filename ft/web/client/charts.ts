/**
 * Live charts of the last minutes (uPlot): the backup's lag behind the primary (slices) with the
 * output-rule delay (ms), and the logging channel's bandwidth (KiB/s, from the primary's byte
 * counter). One point per status poll of the primary; older points than the window fall off.
 */
import uPlot from "uplot";

const windowSeconds = 300;

/** 1.5k, 12M: axis labels that fit. */
function short(v: number | null): string {
  if (v === null) return ""; // uPlot leaves out some ticks of a log scale
  const a = Math.abs(v);
  if (a >= 1e6) return `${+(v / 1e6).toFixed(1)}M`;
  if (a >= 1e3) return `${+(v / 1e3).toFixed(1)}k`;
  return `${+v.toFixed(2)}`;
}

interface Series {
  t: number[];
  a: Array<number | null>;
  b: Array<number | null>;
}

export class LiveChart {
  private readonly plot: uPlot;
  private readonly data: Series = { t: [], a: [], b: [] };

  /** `log`: a logarithmic y axis (bandwidth: a join's checkpoint is 1000 times the log's rate); values below 0.1 show as 0.1. */
  constructor(el: HTMLElement, title: string, a: { label: string; stroke: string }, b: { label: string; stroke: string; scale?: string }, private readonly log = false) {
    const width = Math.max(280, el.clientWidth - 8);
    this.plot = new uPlot(
      {
        title,
        width,
        height: 150,
        scales: { x: { time: true }, ...(log ? { y: { distr: 3 as const } } : {}) },
        axes: [
          { stroke: "#8a9", grid: { stroke: "#2a2e33" } },
          { stroke: "#8a9", grid: { stroke: "#2a2e33" }, size: 56, values: (_u, vals) => vals.map(short) },
          ...(b.scale ? [{ scale: b.scale, side: 1 as const, stroke: "#8a9", grid: { show: false }, size: 56, values: (_u: uPlot, vals: Array<number | null>) => vals.map(short) }] : []),
        ],
        series: [{}, { label: a.label, stroke: a.stroke, width: 1.5, spanGaps: false, points: { show: false } }, { label: b.label, stroke: b.stroke, width: 1.5, spanGaps: false, points: { show: false }, ...(b.scale ? { scale: b.scale } : {}) }],
        legend: { live: false },
      },
      [[], [], []],
      el,
    );
  }

  push(atSeconds: number, a: number | null, b: number | null): void {
    const d = this.data;
    d.t.push(atSeconds);
    const floor = (v: number | null) => (v === null || !this.log ? v : Math.max(v, 0.1));
    d.a.push(floor(a));
    d.b.push(floor(b));
    while (d.t.length > 0 && d.t[0]! < atSeconds - windowSeconds) {
      d.t.shift();
      d.a.shift();
      d.b.shift();
    }
    this.plot.setData([d.t, d.a, d.b]);
  }
}
