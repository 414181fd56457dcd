/**
 * Clients of the bundled linux guest's network servers, as any host program would be (Node's `net`
 * and `http`, nothing of lockstep on their path): the request counter on port 80 and the numbered
 * lines on port 7000. The network tests, scripts/net-tap-check.ts and the benchmarks use them.
 */
import { request } from "node:http";
import { connect, type Socket } from "node:net";
import { until } from "../ft/runtime/until.js";

/** One GET of the guest's request counter (a fresh connection): the count it answered. */
export function getCount(host: string, port: number, timeoutMs: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request({ host, port, path: "/cgi-bin/count", agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.on("data", (d: Buffer) => (body += d.toString()));
      res.on("end", () => {
        const m = /request (\d+)/.exec(body);
        if (m) resolve(Number(m[1]));
        else reject(new Error(`unexpected answer ${res.statusCode}: ${body.slice(0, 200)}`));
      });
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`no answer in ${timeoutMs / 1000} s`)));
    req.on("error", reject);
    req.end();
  });
}

/** A connection to the guest's numbered lines: what arrived, and what went wrong after it was up. */
export interface NumberStream {
  socket: Socket;
  /** The numbers received so far (whole lines). */
  numbers(): number[];
  /** Errors or a close of the connection once it was up (a reset shows here). */
  problems: string[];
  close(): void;
}

/**
 * Connects (again and again, until `timeoutMs`) until the guest's server answers. `talk`: the client
 * speaks first and sends a dot every 200 ms, as an interactive client would. Debian 12's passt needs
 * both: it completes a handshake with the guest only with the client's first data (no bare ACK for
 * the guest's SYN-ACK), and it never acknowledges a segment again that it acknowledged once, so when
 * that ACK died with a primary the guest retransmits the segment for ever and, Nagle holding its
 * next lines behind it, a stream in which only the guest sends stalls; the client's next segment
 * carries the ACK (README: The network). Linux's TCP as the peer needs neither.
 */
export async function streamNumbers(host: string, port: number, options: { talk: boolean; timeoutMs: number; what: () => string }): Promise<NumberStream> {
  let stream: NumberStream | undefined;
  await until(
    () =>
      new Promise<boolean>((resolve) => {
        const s = connect(port, host, () => options.talk && s.write("start\n"));
        const fail = () => {
          s.destroy();
          resolve(false);
        };
        s.once("error", fail);
        s.setTimeout(3000, fail);
        s.once("data", (first: Buffer) => {
          s.setTimeout(0);
          s.removeListener("error", fail);
          let text = first.toString();
          const problems: string[] = [];
          const talk = options.talk ? setInterval(() => s.write("."), 200) : undefined;
          s.on("data", (more: Buffer) => (text += more.toString()));
          s.on("error", (e) => problems.push(`stream error: ${e.message}`));
          s.on("close", () => problems.push("stream closed"));
          stream = {
            socket: s,
            numbers: () => text.split("\n").slice(0, -1).map(Number),
            problems,
            close: () => {
              clearInterval(talk);
              s.removeAllListeners("close");
              s.destroy();
            },
          };
          resolve(true);
        });
      }),
    options.timeoutMs,
    () => `the guest's numbers server; ${options.what()}`,
    500,
  );
  return stream!;
}
