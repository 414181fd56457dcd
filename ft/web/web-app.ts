/**
 * The web view's server side: one page (the guest's console in xterm.js, a card per node, charts of
 * lag and logging-channel bandwidth, the timeline) and the files it loads, served by every node on
 * the same HTTP server as /status and /metrics, and by `lockstep demo` with its kill buttons.
 *
 * Nothing is built for the browser: the page loads the compiled modules of its own client
 * (dist/ft/web/client) and the console protocol's decoders (dist/ft/wire ...) as ES modules, and
 * xterm.js, uPlot and msgpackr from their installed packages, through an import map. No CDN: the page
 * works on a machine without a network.
 *
 * Credentials: the page and its files are public (code and layout, no secret: the node list is on
 * /status already); what they do needs the console credential, which the page takes from its address's
 * fragment (`/#token=...`, the address `lockstep demo` prints: a fragment never reaches a server or
 * its logs, and the page removes it from the address bar at once) or from its sign-in form, keeps in
 * sessionStorage (this origin, this tab), checks with GET /auth (401 when wrong) and presents to every
 * node of the pair: on the console WebSocket as a subprotocol `bearer.<base64url>` (a browser cannot
 * set headers on a WebSocket; the same scheme as Kubernetes'), on /status as `Authorization: Bearer`,
 * which another origin may then read (CORS). No cookie: cookies are not kept apart by port, so one
 * for 127.0.0.1 would reach every local server, the guest's forwarded web server among them. A page
 * of another site holds no credential, and may not frame this one.
 */
import { existsSync, readFileSync } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { packageRoot } from "../../emulator/package-root.js";
import { requestCredential, tokenMatches } from "./credentials.js";

/** What the page is told when it loads (as JSON in the page; public). */
export interface WebPageConfig {
  /** Nodes to watch first, as http(s) URLs; the page finds the others through their /status (peerUrl). */
  nodes: string[];
  /** Served by `lockstep demo`: the page shows its buttons and asks it for the node list. */
  demo: boolean;
  title: string;
}

const requireHere = createRequire(import.meta.url);
/** The folder of an installed package (found from its entry point: not every package exports its package.json). */
function packageDir(name: string): string {
  let dir = dirname(requireHere.resolve(name));
  for (;;) {
    const manifest = join(dir, "package.json");
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, "utf8")) as { name?: string }).name === name) return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`package ${name} not found`);
    dir = parent;
  }
}

/** Files the page may load: URL path -> file. */
function assetTable(): Map<string, string> {
  const files = new Map<string, string>();
  const dist = join(packageRoot(), "dist");
  // the client's modules and what they import of the protocol (compiled; `npm install` builds them)
  for (const m of ["ft/web/client", "ft/wire/console-messages.js", "ft/wire/envelope.js", "ft/core/console-cursor.js", "emulator/lockstep-error.js", "hypervisor/msgpack.js", "emulator/scancodes.js", "emulator/text-screen.js"]) {
    if (m.endsWith(".js")) files.set(`/app/${m}`, join(dist, m));
    else for (const f of ["main.js", "web-console.js", "web-screen.js", "node-watch.js", "charts.js", "view.js"]) files.set(`/app/${m}/${f}`, join(dist, m, f));
  }
  const msgpackr = packageDir("msgpackr");
  for (const f of ["index.js", "pack.js", "unpack.js", "iterators.js"]) files.set(`/vendor/msgpackr/${f}`, join(msgpackr, f));
  const xterm = packageDir("@xterm/xterm");
  files.set("/vendor/xterm/xterm.mjs", join(xterm, "lib", "xterm.mjs"));
  files.set("/vendor/xterm/xterm.css", join(xterm, "css", "xterm.css"));
  const uplot = packageDir("uplot");
  files.set("/vendor/uplot/uPlot.esm.js", join(uplot, "dist", "uPlot.esm.js"));
  files.set("/vendor/uplot/uPlot.min.css", join(uplot, "dist", "uPlot.min.css"));
  return files;
}

let assets: Map<string, string> | undefined;

const contentTypes: Record<string, string> = { js: "text/javascript", mjs: "text/javascript", css: "text/css" };

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(config: WebPageConfig): string {
  // JSON inside a script element: no "</script>" or "<!--" can close it early
  const json = JSON.stringify(config).replace(/</g, "\\u003c");
  const imports = { msgpackr: "/vendor/msgpackr/index.js", "@xterm/xterm": "/vendor/xterm/xterm.mjs", uplot: "/vendor/uplot/uPlot.esm.js" };
  return `<!doctype html><html><head><meta charset="utf-8"><title>${escapeHtml(config.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/vendor/xterm/xterm.css"><link rel="stylesheet" href="/vendor/uplot/uPlot.min.css">
<style>${pageStyle}</style>
<script type="importmap">${JSON.stringify({ imports })}</script>
<script id="lockstep-config" type="application/json">${json}</script>
<script type="module" src="/app/ft/web/client/main.js"></script>
</head><body>
<form id="sign-in" hidden><h2>${escapeHtml(config.title)}</h2><p id="sign-in-error" class="err"></p>
<label>Console credential (the one <code>lockstep console</code> uses)<br><input type="password" name="token" autocomplete="current-password" autofocus></label><br><button>Sign in</button></form>
<header><h1>lockstep</h1><span id="pair-summary">connecting…</span><span id="demo-buttons" hidden>
<button id="kill-primary" class="danger">Kill primary</button><button id="kill-backup" class="danger">Kill backup</button><button id="start-backup">Start a new backup</button></span></header>
<main><section id="console-pane"><div class="pane-title">guest console <span id="console-state"></span></div><div id="terminal"></div>
<details id="screen-pane"><summary class="pane-title">guest screen (VGA text; keys typed here go to its keyboard)</summary><pre id="screen" tabindex="0"></pre></details>
<div class="pane-title timeline-title">timeline</div><ol id="timeline"></ol></section>
<section id="side"><div id="cards"></div><div class="chart" id="lag-chart"></div><div class="chart" id="bw-chart"></div></section></main>
</body></html>`;
}

const pageStyle = `
body{margin:0;font:13px system-ui,sans-serif;background:#101214;color:#d8dadc}
header{display:flex;gap:1em;align-items:center;padding:.5em 1em;background:#181b1f;border-bottom:1px solid #2a2e33}
header h1{font-size:16px;margin:0}#pair-summary{flex:1}
button{font:inherit;padding:.35em .9em;border-radius:4px;border:1px solid #456;background:#223;color:#dde;cursor:pointer;margin-left:.4em}
button.danger{border-color:#a44;background:#3a1c1c}button:disabled{opacity:.5;cursor:default}
main{display:grid;grid-template-columns:minmax(0,3fr) minmax(300px,2fr);gap:.8em;padding:.8em}
.pane-title{color:#8a9;font-size:12px;text-transform:uppercase;letter-spacing:.05em;margin-bottom:.3em}
#terminal{height:440px;background:#000;padding:4px}
#screen-pane{margin-top:.6em}#screen-pane summary{cursor:pointer}
#screen{margin:0;background:#000;color:#aaa;font:14px/1.15 monospace;padding:4px;width:max-content;outline:none}#screen:focus{box-shadow:0 0 0 1px #456}
#cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(230px,1fr));gap:.6em}
.card{background:#181b1f;border:1px solid #2a2e33;border-radius:6px;padding:.6em .8em}
.card h3{margin:0 0 .3em;font-size:14px;display:flex;justify-content:space-between}
.card.primary{border-color:#3a7}.card.stale{border-color:#a84;opacity:.75}.stale .role{background:#5a4a1d}.card.backup{border-color:#37a}.card.halted,.card.unreachable{border-color:#a44;opacity:.75}
.role{font-weight:600;text-transform:uppercase;font-size:11px;padding:.1em .4em;border-radius:3px;background:#333}
.primary .role{background:#1d5a3a}.backup .role{background:#1d3a5a}.halted .role,.unreachable .role{background:#5a1d1d}
.card dl{display:grid;grid-template-columns:auto 1fr;gap:.1em .8em;margin:0}.card dt{color:#8a9}.card dd{margin:0;font-variant-numeric:tabular-nums}
.chart{margin-top:.6em;background:#181b1f;border:1px solid #2a2e33;border-radius:6px;padding:.3em}
.timeline-title{margin-top:.8em}#timeline{margin:0;padding:.3em .3em .3em 2.2em;height:300px;overflow:auto;font-variant-numeric:tabular-nums;background:#181b1f;border:1px solid #2a2e33;border-radius:6px}
#timeline li{padding:.1em 0}#timeline .t{color:#8a9;margin-right:.6em}#timeline .n{color:#9ab;margin-right:.6em}
#timeline .took-over,#timeline .peer-failed,#timeline .halted{color:#f99}#timeline .protected{color:#9e9}
.protected-yes{color:#7d7}.protected-no{color:#f77}
#sign-in{max-width:28em;margin:10vh auto;background:#1c1c1c;padding:2em;border-radius:8px}#sign-in input{font:inherit;padding:.4em;margin:.5em 0;width:22em}.err{color:#f77}
body.signed-out header,body.signed-out main{display:none}
`;

export interface WebAppOptions {
  /** The console credential. */
  token: string;
  config: () => WebPageConfig;
}

/** Answers the page, its files and /auth; false for any other request (the caller's). */
export function serveWebApp(req: IncomingMessage, res: ServerResponse, options: WebAppOptions): boolean {
  const path = new URL(req.url ?? "/", "http://x").pathname;
  const isAsset = path.startsWith("/app/") || path.startsWith("/vendor/");
  if (path !== "/" && path !== "/auth" && !isAsset) return false;
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.writeHead(405, { allow: "GET" });
    res.end();
    return true;
  }
  const given = requestCredential(req);
  const wrong = given !== undefined && !tokenMatches(given, options.token);
  if (path === "/auth" || wrong) {
    // a credential given in a header is checked, on the page too: a script or `curl -u` learns at once
    const ok = given !== undefined && !wrong;
    res.writeHead(ok ? 204 : 401, { "cache-control": "no-store", ...(ok ? {} : { "content-type": "text/plain", "www-authenticate": 'Bearer realm="lockstep"' }) });
    res.end(ok ? undefined : "wrong or missing console credential\n");
    return true;
  }
  if (path === "/") {
    res.writeHead(200, {
      "content-type": "text/html; charset=utf-8",
      "cache-control": "no-store",
      "referrer-policy": "no-referrer",
      "x-content-type-options": "nosniff",
      "content-security-policy": "frame-ancestors 'none'",
      "x-frame-options": "DENY",
    });
    res.end(page(options.config()));
    return true;
  }
  assets ??= assetTable();
  const file = assets.get(path);
  if (!file || !existsSync(file)) {
    res.writeHead(404, { "content-type": "text/plain" });
    res.end(file ? `${path}: not built (npm run build)\n` : `${path}: no such file\n`);
    return true;
  }
  const ext = file.slice(file.lastIndexOf(".") + 1);
  res.writeHead(200, { "content-type": `${contentTypes[ext] ?? "application/octet-stream"}; charset=utf-8`, "x-content-type-options": "nosniff", "cache-control": "no-cache" });
  res.end(readFileSync(file));
  return true;
}
