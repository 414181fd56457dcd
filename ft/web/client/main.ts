/**
 * The web view's entry point: reads what the page was told (the credential, the nodes to start from,
 * whether `lockstep demo` serves it), and ties the console (xterm.js), the node watcher, the cards,
 * the charts, the timeline and the demo's buttons together. `window.lockstepView` lets a test (or a
 * person in the browser's console) read what the page holds: the console transcript, the nodes.
 */
import { Terminal } from "@xterm/xterm";
import { LiveChart } from "./charts.js";
import { NodeWatch, type WatchedNode } from "./node-watch.js";
import { channelRate, newestEpoch, nodeRole, renderCards, renderSummary, renderTimeline, type TimelineEntry } from "./view.js";
import { WebConsole } from "./web-console.js";
import { WebScreen } from "./web-screen.js";

interface PageConfig {
  nodes: string[];
  demo: boolean;
  title: string;
}

const config = JSON.parse(document.getElementById("lockstep-config")!.textContent!) as PageConfig;
const byId = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
document.title = config.title;

/**
 * The console credential: from the address's fragment (`#token=...`, which never reaches a server;
 * removed from the address bar at once), else from this tab's sessionStorage, else from the sign-in
 * form; checked with GET /auth before anything else runs.
 */
async function credential(): Promise<string> {
  const fromHash = new URLSearchParams(location.hash.slice(1)).get("token");
  if (fromHash !== null) {
    sessionStorage.setItem("lockstep-token", fromHash);
    history.replaceState(null, "", location.pathname + location.search);
  }
  const check = async (token: string) => (await fetch("/auth", { headers: { authorization: `Bearer ${token}` }, cache: "no-store" })).status === 204;
  const stored = sessionStorage.getItem("lockstep-token");
  if (stored !== null && (await check(stored))) return stored;
  const form = byId<HTMLFormElement>("sign-in");
  const error = byId("sign-in-error");
  if (stored !== null) error.textContent = "Wrong credential (401).";
  sessionStorage.removeItem("lockstep-token");
  document.body.classList.add("signed-out");
  form.hidden = false;
  return new Promise((resolve) => {
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const token = new FormData(form).get("token")?.toString() ?? "";
      void check(token).then((ok) => {
        if (!ok) return void (error.textContent = "Wrong credential (401).");
        sessionStorage.setItem("lockstep-token", token);
        form.hidden = true;
        document.body.classList.remove("signed-out");
        resolve(token);
      });
    });
  });
}

const token = await credential();

const term = new Terminal({ cols: 100, rows: 26, convertEol: false, scrollback: 5000, fontSize: 13, theme: { background: "#000000" } });
term.open(byId("terminal"));
// a node's own page starts from where the browser reached it (its own idea of its address may not be reachable from here)
const watch = new NodeWatch(token, config.demo ? config.nodes : [location.origin, ...config.nodes], { demo: config.demo });
const consoleState = byId("console-state");
const decoder = new TextDecoder();
let transcript = "";
const warnings: string[] = [];
const timeline = new Map<string, TimelineEntry>();
const note = (kind: string, text: string) => {
  const atMs = Date.now();
  timeline.set(`page:${atMs}:${timeline.size}`, { key: "", atMs, node: "view", kind, text });
};

const web = new WebConsole(token, () => watch.consoleCandidates(), {
  output: (bytes) => {
    term.write(bytes);
    transcript += decoder.decode(bytes, { stream: true });
    if (transcript.length > 4 << 20) transcript = transcript.slice(-(2 << 20));
  },
  attached: (url, epoch) => {
    consoleState.textContent = `attached to ${nameOf(url)} (epoch ${epoch})`;
    note("attached", `console attached to ${nameOf(url)}, epoch ${epoch}`);
  },
  detached: (url) => {
    consoleState.textContent = `lost ${nameOf(url)}: looking for the live node…`;
  },
  warning: (text) => warnings.push(text),
  contradiction: (c) => {
    warnings.push(`output contradiction at offset ${c.offset} from ${c.url}`);
    note("halted", `OUTPUT CONTRADICTION at offset ${c.offset} from ${nameOf(c.url)}`);
  },
  gap: (g) => note("peer-failed", `console output ${g.from}..${g.to} was held by no live node: skipped`),
});
term.onData((s) => web.send(new TextEncoder().encode(s)));
const screen = new WebScreen(byId<HTMLDetailsElement>("screen-pane"), byId("screen"), token, () => web.attachedTo, (codes) => web.send(codes, true), () => web.offset === 0);

function nameOf(url: string): string {
  return watch.nodes.get(url.replace(/\/$/, ""))?.name ?? url;
}

const lagChart = new LiveChart(byId("lag-chart"), "backup lag", { label: "lag (slices)", stroke: "#e8a33d" }, { label: "output delay p50 (ms)", stroke: "#5fb3f0", scale: "ms" });
const bwChart = new LiveChart(byId("bw-chart"), "logging channel", { label: "KiB/s", stroke: "#7dd87d" }, { label: "console KiB/s", stroke: "#c98bf0" }, true);

let lastUnreachable = new Set<string>();
watch.onUpdate(() => {
  const nodes = [...watch.nodes.values()].sort((a, b) => a.name.localeCompare(b.name));
  renderCards(byId("cards"), nodes);
  renderSummary(byId("pair-summary"), nodes);
  // a node that stopped answering (SIGSTOP, a partition) never closes the console's connection
  const unreachable = new Set(nodes.filter((n) => !n.reachable).map((n) => n.url));
  for (const url of unreachable) if (!lastUnreachable.has(url)) web.drop(url);
  lastUnreachable = unreachable;
  const epoch = newestEpoch(nodes);
  const primary = nodes.find((n) => nodeRole(n, epoch) === "primary");
  const now = Date.now() / 1000;
  if (primary?.status) {
    // a backup joining from a checkpoint lags by the whole run until it restored it: not lag
    lagChart.push(now, primary.status.protected ? primary.status.lagSlices : null, primary.status.outputDelayMs.p50);
    const bw = channelRate(primary);
    const prev = primary.previous;
    const consoleRate = prev && primary.answeredAt !== undefined && primary.answeredAt > prev.at ? ((primary.status.releasedBytes - prev.status.releasedBytes) * 1000) / (primary.answeredAt - prev.at) : null;
    bwChart.push(now, bw === null ? null : Math.max(0, bw) / 1024, consoleRate === null ? null : Math.max(0, consoleRate) / 1024);
  } else {
    lagChart.push(now, null, null);
    bwChart.push(now, null, null);
  }
  for (const n of nodes) for (const e of n.status?.timeline ?? []) timeline.set(`${n.status!.nodeId}:${e.seq}`, { key: "", atMs: e.atMs, node: n.name, kind: e.kind, text: e.text });
  for (const e of watch.demoEvents) timeline.set(`demo:${e.seq}`, { key: "", atMs: e.atMs, node: "demo", kind: e.kind, text: e.text });
  renderTimeline(byId("timeline"), timeline);
});

if (config.demo) {
  byId("demo-buttons").hidden = false;
  const act = async (what: string, button: HTMLButtonElement) => {
    button.disabled = true;
    try {
      const r = await fetch(`/demo/${what}`, { method: "POST", headers: { authorization: `Bearer ${token}` } });
      const body = (await r.json()) as { message: string };
      consoleState.textContent = body.message;
    } catch (e) {
      consoleState.textContent = `the demo did not answer: ${(e as Error).message}`;
    } finally {
      button.disabled = false;
    }
  };
  for (const what of ["kill-primary", "kill-backup", "start-backup"]) {
    const b = byId<HTMLButtonElement>(what);
    b.addEventListener("click", () => void act(what, b));
  }
}

watch.start();
web.start();
screen.start();
term.focus();

/** For tests and the curious: what the page holds. */
(window as unknown as { lockstepView: unknown }).lockstepView = {
  transcript: () => transcript,
  /** The guest's VGA text screen as the page last read it. */
  vgaText: () => screen.text(),
  vgaPictures: () => screen.pictures,
  /** The lines the terminal shows (its buffer, scrollback included). */
  screenText: () => {
    const b = term.buffer.active;
    const lines: string[] = [];
    for (let i = 0; i < b.length; i++) lines.push(b.getLine(i)?.translateToString(true) ?? "");
    return lines.join("\n");
  },
  warnings: () => [...warnings],
  attachedTo: () => (web.attachedTo ? nameOf(web.attachedTo) : null),
  offset: () => web.offset,
  nodes: () => [...watch.nodes.values()].map((n: WatchedNode) => ({ name: n.name, url: n.url, role: nodeRole(n, newestEpoch([...watch.nodes.values()])), epoch: n.status?.epoch ?? null, protected: n.status?.protected ?? null })),
  timeline: () => [...timeline.values()].sort((a, b) => a.atMs - b.atMs).map((e) => `${e.node}: ${e.text}`),
};
