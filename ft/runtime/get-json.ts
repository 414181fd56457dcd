/**
 * GET a JSON document over HTTP or HTTPS (trusting `ca` when given: a node's self-signed
 * certificate), bounded by `timeoutMs`. For /status of nodes: fetch cannot be given a CA.
 */
import { get as httpGet } from "node:http";
import { get as httpsGet } from "node:https";

/** `token`: sent as Authorization: Bearer (e.g. the console credential for /screen). */
export function getJson<T = unknown>(url: string | URL, options: { ca?: Buffer; timeoutMs?: number; token?: string } = {}): Promise<T> {
  const u = new URL(url);
  const get = u.protocol === "https:" ? httpsGet : httpGet;
  return new Promise<T>((resolve, reject) => {
    const req = get(u, { timeout: options.timeoutMs ?? 2000, ...(options.token !== undefined ? { headers: { authorization: `Bearer ${options.token}` } } : {}), ...(options.ca && u.protocol === "https:" ? { ca: options.ca } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        if (res.statusCode !== 200) return reject(new Error(`HTTP ${res.statusCode ?? "?"} from ${u.href}`));
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString("utf8")) as T);
        } catch (e) {
          reject(new Error(`${u.href} did not answer JSON: ${(e as Error).message}`));
        }
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer from ${u.href} within ${options.timeoutMs ?? 2000} ms`)));
    req.on("error", reject);
  });
}
