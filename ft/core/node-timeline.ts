/**
 * NodeTimeline: the events of a node's life that a person watching the pair wants to see (started,
 * a backup joined, protected, the peer failed, took over, epoch N, halted), derived from the changes
 * of the node's role, epoch and state, each with the wall-clock time it was seen. Bounded: the newest
 * `max` events are kept. Wall time here is for people reading the timeline; the guest never sees it.
 */

export type TimelineKind = "started" | "joined" | "protected" | "peer-failed" | "claiming" | "took-over" | "epoch" | "halted";

export interface TimelineEvent {
  /** 1, 2, 3... per node: a reader merging several nodes' timelines dedups by (node, seq). */
  seq: number;
  /** Wall-clock time (ms since the epoch) the change was seen. */
  atMs: number;
  kind: TimelineKind;
  text: string;
}

/** What the timeline watches of a node. */
export interface TimelineSnapshot {
  role: "primary" | "backup" | "halted";
  epoch: number;
  state: string;
  backup: string | null;
  haltReason: string | null;
}

export class NodeTimeline {
  private readonly events: TimelineEvent[] = [];
  private seq = 0;
  private last: TimelineSnapshot | undefined;

  constructor(private readonly max = 100) {}

  /** The newest events, oldest first. */
  recent(n = this.max): TimelineEvent[] {
    return this.events.slice(-n);
  }

  observe(now: TimelineSnapshot, atMs: number): void {
    const was = this.last;
    this.last = { ...now };
    const add = (kind: TimelineKind, text: string) => {
      this.events.push({ seq: ++this.seq, atMs, kind, text });
      if (this.events.length > this.max) this.events.shift();
    };
    if (!was) return add("started", `started as ${now.role}${now.role === "primary" ? ` (epoch ${now.epoch})` : ""}`);
    if (now.role === "halted") {
      if (was.role !== "halted") add("halted", `halted: ${now.haltReason ?? "unknown reason"}`);
      return;
    }
    if (was.role === "backup" && now.role === "primary") add("took-over", `took over as primary (epoch ${now.epoch})`);
    // a backup learns the primary's epoch when it attaches: only a primary's new epoch is news
    else if (now.epoch !== was.epoch && now.role === "primary") add("epoch", `epoch ${now.epoch}`);
    if (now.state === was.state && now.backup === was.backup) return;
    if (now.role === "primary") {
      if (now.state === "joining") add("joined", `backup ${now.backup} joining`);
      else if (now.state === "protected") add("protected", `protected by ${now.backup}`);
      else if (now.state === "unprotected" && (was.state === "protected" || was.state === "joining")) add("peer-failed", `backup ${was.backup} lost: unprotected`);
      else if (now.state === "claiming") add("claiming", `claiming the next epoch`);
    } else if (now.role === "backup") {
      if (now.state === "following" && was.state === "waiting") add("joined", "following the primary");
      else if (now.state === "claiming") add("peer-failed", `primary lost: claiming epoch ${now.epoch + 1}`);
    }
  }
}
