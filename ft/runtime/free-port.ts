/**
 * freePort: a TCP port on loopback that nothing listens on right now. Only for a process that must
 * be told its peer's port before that peer is up (the demo starts its backup beside its primary);
 * a node that can listen on port 0 and report the port it got (NodeProcess) needs none.
 */
import { createServer } from "node:net";

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}
