/**
 * Where a process's resident memory lives, from /proc/PID/smaps (Linux): for telling growth in the
 * JS heaps from growth in the C heap (glibc's arenas), in compiled code (V8's JIT and wasm code
 * space, mapped executable) or in files. Used by the soak scripts to say which kind of memory grew.
 */
import { readFileSync } from "node:fs";

export interface Mapping {
  /** "start-end perms path" as smaps names it. */
  name: string;
  perms: string;
  path: string;
  sizeKiB: number;
  rssKiB: number;
}

export interface MemoryKinds {
  /** MiB resident: the brk heap, anonymous executable mappings (compiled code), other anonymous mappings, files. */
  brk: number;
  code: number;
  anon: number;
  file: number;
  /** Anonymous mappings with anything resident. */
  anonMappings: number;
}

/** The process's mappings, or undefined when it is gone or this is not Linux. */
export function readMappings(pid: number): Mapping[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/smaps`, "utf8");
  } catch {
    return undefined;
  }
  const out: Mapping[] = [];
  let cur: Mapping | undefined;
  for (const line of text.split("\n")) {
    const head = /^([0-9a-f]+-[0-9a-f]+) (\S{4}) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (head) {
      cur = { name: `${head[1]} ${head[2]} ${head[3] ?? ""}`.trim(), perms: head[2]!, path: head[3] ?? "", sizeKiB: 0, rssKiB: 0 };
      out.push(cur);
      continue;
    }
    const field = /^(Size|Rss):\s+(\d+) kB/.exec(line);
    if (field && cur) cur[field[1] === "Size" ? "sizeKiB" : "rssKiB"] = Number(field[2]);
  }
  return out;
}

const mib = (kib: number) => +(kib / 1024).toFixed(1);

export function memoryKinds(maps: Mapping[]): MemoryKinds {
  let brk = 0, code = 0, anon = 0, file = 0, anonMappings = 0;
  for (const m of maps) {
    if (m.path === "[heap]") brk += m.rssKiB;
    else if (m.path.startsWith("/")) file += m.rssKiB;
    else if (m.perms.includes("x")) code += m.rssKiB;
    else {
      anon += m.rssKiB;
      if (m.rssKiB > 0) anonMappings++;
    }
  }
  return { brk: mib(brk), code: mib(code), anon: mib(anon), file: mib(file), anonMappings };
}

/** The mappings whose resident size grew most between two readings (by address range), largest first. */
export function grown(before: Mapping[], after: Mapping[], count = 5): Array<{ name: string; sizeMiB: number; fromMiB: number; toMiB: number }> {
  const was = new Map(before.map((m) => [m.name, m.rssKiB]));
  return after
    .map((m) => ({ name: m.name, sizeMiB: mib(m.sizeKiB), fromMiB: mib(was.get(m.name) ?? 0), toMiB: mib(m.rssKiB), delta: m.rssKiB - (was.get(m.name) ?? 0) }))
    .filter((g) => g.delta > 0)
    .sort((a, b) => b.delta - a.delta)
    .slice(0, count)
    .map(({ delta: _, ...g }) => g);
}
