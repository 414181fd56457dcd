/**
 * Logging: pino, structured, one child logger per component (`{component, role, epoch}` as they
 * apply). Logs go to stderr so that stdout stays the guest's console; they are pretty only when
 * stderr is a terminal.
 */
import { pino, type Logger } from "pino";

let root: Logger | undefined;

export function rootLogger(level: string = process.env.LOCKSTEP_LOG_LEVEL ?? "info"): Logger {
  if (root) return root;
  const pretty = process.stderr.isTTY === true;
  root = pretty
    ? pino({ level }, pino.transport({ target: "pino-pretty", options: { destination: 2, colorize: true, translateTime: "HH:MM:ss.l", ignore: "pid,hostname" } }))
    : pino({ level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
  return root;
}

export function componentLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...bindings });
}

/** Sets the level before the first logger is made (CLI flag). */
export function setLogLevel(level: string): void {
  if (root) root.level = level;
  else rootLogger(level);
}
