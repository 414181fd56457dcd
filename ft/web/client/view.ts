/**
 * The page's DOM: one card per node (role, epoch, protection, slice, log, lag, output-rule delay,
 * disk and network counters, memory), the pair's one-line summary, and the timeline merged from
 * every node's events (and the demo's: what it killed and started), newest last.
 */
import type { NodeStatus, WatchedNode } from "./node-watch.js";

function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Record<string, string> = {}, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

const fmt = new Intl.NumberFormat("en", { maximumFractionDigits: 1 });
const n = (x: number | null | undefined) => (x === null || x === undefined ? "–" : fmt.format(x));
const bytes = (x: number) => (x < 1024 ? `${x} B` : x < 2 ** 20 ? `${fmt.format(x / 1024)} KiB` : x < 2 ** 30 ? `${fmt.format(x / 2 ** 20)} MiB` : `${fmt.format(x / 2 ** 30)} GiB`);

/** The newest epoch any reachable node of the pair is in. */
export function newestEpoch(nodes: WatchedNode[]): number {
  return Math.max(0, ...nodes.filter((n) => n.reachable && n.status && n.status.role !== "halted").map((n) => n.status!.epoch));
}

/**
 * What a node is, as the page says it: its role, unreachable (or killed, in the demo), or stale: a
 * primary of an older epoch than another node is in (one woken from a pause, about to halt), which
 * the page never shows as the primary.
 */
export function nodeRole(node: WatchedNode, epoch: number): string {
  if (!node.reachable || !node.status) return node.running === false ? "killed" : "unreachable";
  if (node.status.role === "primary" && node.status.epoch < epoch) return "stale";
  return node.status.role;
}

function protection(s: NodeStatus): string {
  if (s.role !== "primary") return s.role === "backup" ? s.state : "–";
  if (s.protected) return `protected by ${s.backup}`;
  if (s.state === "joining") return `backup ${s.backup} joining`;
  return "UNPROTECTED";
}

function rate(node: WatchedNode, pick: (s: NodeStatus) => number): number | null {
  const p = node.previous;
  if (!p || !node.status || node.answeredAt === undefined || node.answeredAt <= p.at) return null;
  return ((pick(node.status) - pick(p.status)) * 1000) / (node.answeredAt - p.at);
}

/** Bytes per second the node sends on the logging channel (the primary: the log). */
export function channelRate(node: WatchedNode): number | null {
  return rate(node, (s) => s.peerBytesSent);
}

export function renderCards(container: HTMLElement, nodes: WatchedNode[]): void {
  const epoch = newestEpoch(nodes);
  container.replaceChildren(
    ...nodes.map((node) => {
      const role = nodeRole(node, epoch);
      const card = el("div", { class: `card ${role}`, "data-node": node.name, "data-role": role });
      const h = el("h3");
      h.append(el("span", {}, node.name), el("span", { class: "role" }, role));
      card.append(h);
      const dl = el("dl");
      const row = (k: string, v: string, cls?: string) => dl.append(el("dt", {}, k), el("dd", cls ? { class: cls } : {}, v));
      row("address", node.url);
      const s = node.status;
      if (s && node.reachable) {
        row("epoch", String(s.epoch));
        row("protection", protection(s), s.role === "primary" ? (s.protected ? "protected-yes" : "protected-no") : undefined);
        row("slice", n(s.slice));
        row("log entries", n(s.logEntries));
        if (s.role === "primary") {
          row("backup lag", `${n(s.lagSlices)} slices, ${n(s.backupLagMs.p50)} ms p50`);
          row("output delay", `${n(s.outputDelayMs.p50)} ms p50, ${n(s.outputDelayMs.p99)} ms p99`);
          row("channel", `${bytes(Math.max(0, channelRate(node) ?? 0))}/s, ${bytes(s.peerBytesSent)} sent`);
        } else if (s.role === "backup") row("channel", `${bytes(s.peerBytesReceived)} received`);
        if (s.disk) row("disk", `${n(s.disk.reads)} reads, ${n(s.disk.writes)} writes (${bytes(s.disk.bytesWritten)})`);
        if (s.net) row("network", `${n(s.net.framesOut)} out, ${n(s.net.framesIn)} in${s.net.held ? `, ${s.net.held} held` : ""}${s.net.guestIp ? ` (${s.net.guestIp})` : ""}`);
        row("console", `${bytes(s.outputBytes)} out, ${s.consoleClients} client(s)`);
        row("memory", `${n(s.memory.rss)} MiB rss`);
        if (s.haltReason) row("halted", s.haltReason);
      } else {
        row("state", node.running === false ? "killed by the demo" : "not answering");
        if (s) row("last seen as", `${s.role}, epoch ${s.epoch}`);
      }
      card.append(dl);
      return card;
    }),
  );
}

export function renderSummary(target: HTMLElement, nodes: WatchedNode[]): void {
  const epoch = newestEpoch(nodes);
  const primary = nodes.find((x) => nodeRole(x, epoch) === "primary");
  if (!primary?.status) {
    target.textContent = "no live primary reachable";
    target.dataset.primary = "";
    return;
  }
  const s = primary.status;
  target.textContent = `primary ${primary.name}, epoch ${s.epoch}: ${protection(s)}`;
  target.dataset.primary = primary.name;
  target.dataset.protected = String(s.protected);
}

export interface TimelineEntry {
  key: string;
  atMs: number;
  node: string;
  kind: string;
  text: string;
}

export function renderTimeline(list: HTMLOListElement, entries: Map<string, TimelineEntry>): void {
  const sorted = [...entries.values()].sort((a, b) => a.atMs - b.atMs).slice(-200);
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
  list.replaceChildren(
    ...sorted.map((e) => {
      const li = el("li", { class: e.kind });
      li.append(el("span", { class: "t" }, new Date(e.atMs).toLocaleTimeString()), el("span", { class: "n" }, e.node), document.createTextNode(e.text));
      return li;
    }),
  );
  if (atBottom) list.scrollTop = list.scrollHeight;
}
