/**
 * One-line summaries of Ethernet frames, as tcpdump prints them: ARP, IPv4 (TCP with its flags,
 * sequence numbers and payload length, UDP, ICMP), IPv6 and anything else by its EtherType. Used by
 * `log dump` and the pcap tools; never on the guest's path.
 */

const hex2 = (b: number) => b.toString(16).padStart(2, "0");
const mac = (f: Uint8Array, at: number) => Array.from(f.subarray(at, at + 6), hex2).join(":");
const ipv4 = (f: Uint8Array, at: number) => `${f[at]}.${f[at + 1]}.${f[at + 2]}.${f[at + 3]}`;
const u16 = (f: Uint8Array, at: number) => (f[at]! << 8) | f[at + 1]!;
const u32 = (f: Uint8Array, at: number) => ((f[at]! << 24) | (f[at + 1]! << 16) | (f[at + 2]! << 8) | f[at + 3]!) >>> 0;

function tcpFlags(b: number): string {
  const names: Array<[number, string]> = [[0x02, "S"], [0x01, "F"], [0x04, "R"], [0x08, "P"], [0x10, "."]];
  return names.filter(([bit]) => b & bit).map(([, n]) => n).join("") || "none";
}

export function describeFrame(f: Uint8Array): string {
  if (f.length < 14) return `runt frame of ${f.length} bytes`;
  const type = u16(f, 12);
  const l2 = `${mac(f, 6)} > ${mac(f, 0)}`;
  if (type === 0x0806 && f.length >= 42) {
    const op = u16(f, 20);
    if (op === 1) return `ARP who-has ${ipv4(f, 38)} tell ${ipv4(f, 28)} (${l2})`;
    if (op === 2) return `ARP ${ipv4(f, 28)} is-at ${mac(f, 22)} (${l2})`;
    return `ARP op ${op} (${l2})`;
  }
  if (type === 0x0800 && f.length >= 34) {
    const ihl = (f[14]! & 0x0f) * 4;
    const total = u16(f, 16);
    const proto = f[23]!;
    const src = ipv4(f, 26);
    const dst = ipv4(f, 30);
    const l4 = 14 + ihl;
    if (proto === 6 && f.length >= l4 + 20) {
      const off = (f[l4 + 12]! >> 4) * 4;
      const len = Math.max(0, total - ihl - off);
      return `IP ${src}.${u16(f, l4)} > ${dst}.${u16(f, l4 + 2)}: TCP [${tcpFlags(f[l4 + 13]!)}] seq ${u32(f, l4 + 4)} ack ${u32(f, l4 + 8)} win ${u16(f, l4 + 14)} length ${len}`;
    }
    if (proto === 17 && f.length >= l4 + 8) return `IP ${src}.${u16(f, l4)} > ${dst}.${u16(f, l4 + 2)}: UDP length ${u16(f, l4 + 4) - 8}`;
    if (proto === 1 && f.length >= l4 + 2) return `IP ${src} > ${dst}: ICMP type ${f[l4]} code ${f[l4 + 1]}`;
    return `IP ${src} > ${dst}: protocol ${proto} length ${total}`;
  }
  if (type === 0x86dd) return `IPv6 ${f.length} bytes (${l2})`;
  return `ethertype 0x${type.toString(16).padStart(4, "0")} ${f.length} bytes (${l2})`;
}
