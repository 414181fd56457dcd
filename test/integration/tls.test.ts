// The logging channel and consoles over TLS, with real processes: both nodes serve HTTPS/WSS with a
// self-signed certificate (made here with openssl), the backup dials wss:// trusting it
// (--tls-ca), becomes protected, and a console client over wss:// types a command and reads the
// answer; a client that does not trust the certificate never attaches.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConsoleClient } from "../../ft/runtime/console-client.js";
import { getJson } from "../../ft/runtime/get-json.js";
import { NodeProcess } from "../../ft/runtime/node-process.js";
import { until } from "../../ft/runtime/until.js";

const token = "tls-test-console-token";
const dir = mkdtempSync(join(tmpdir(), "lockstep-tls-"));
const nodes: NodeProcess[] = [];
afterAll(async () => {
  for (const n of nodes) n.kill("SIGKILL");
  await Promise.all(nodes.map((n) => n.waitExit(10_000).catch(() => undefined)));
  rmSync(dir, { recursive: true, force: true });
});

describe("TLS", () => {
  it("a protected pair and a console over wss:// with a certificate the clients trust", async () => {
    const cert = join(dir, "cert.pem");
    const key = join(dir, "key.pem");
    const made = spawnSync("openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", key, "-out", cert], { encoding: "utf8" });
    expect(made.status, made.stderr).toBe(0);
    const ca = readFileSync(cert);
    const tls = ["--tls-cert", cert, "--tls-key", key];
    const shared = join(dir, "shared");
    const a = await NodeProcess.start({ role: "primary", name: "A", sharedDir: shared, token, args: ["--image", "tiny", ...tls] });
    nodes.push(a);
    const aUrl = `wss://127.0.0.1:${a.port}`;
    const b = await NodeProcess.start({ role: "backup", name: "B", sharedDir: shared, token, args: ["--connect", aUrl, "--tls-ca", cert, ...tls] });
    nodes.push(b);
    const status = () => getJson<{ protected?: boolean }>(`https://127.0.0.1:${a.port}/status`, { ca });
    await until(async () => (await status()).protected === true, 60_000, () => `B to protect A over wss; B: ${b.stderr.slice(-1500)}`);

    const untrusting = new ConsoleClient({ urls: [aUrl], token, retryMs: 50 });
    let attachedWithout = false;
    untrusting.on("attached", () => (attachedWithout = true));
    untrusting.start();
    const client = new ConsoleClient({ urls: [aUrl, `wss://127.0.0.1:${b.port}`], token, ca });
    let out = "";
    client.on("output", (d: Uint8Array) => (out += Buffer.from(d).toString("latin1")));
    client.start();
    try {
      await until(() => /tiny> /.test(out), 60_000, () => `the prompt over wss; ${JSON.stringify(out.slice(-200))}`);
      client.send(Buffer.from("ping\r"));
      await until(() => /pong/.test(out), 30_000, "pong over wss");
      expect(attachedWithout).toBe(false);
    } finally {
      client.close();
      untrusting.close();
    }
  }, 120_000);
});
