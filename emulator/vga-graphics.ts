/**
 * The guest's screen in a VBE graphics mode (Bochs dispi: a linear framebuffer, what SeaBIOS's VBE,
 * GRUB's and Linux's bochs-drm/vesafb set up), read from v86's SVGA memory as pixels, and as a PNG.
 * Only read: v86's own redraw goes through the wasm side and updates dirty-tracking state there, so
 * it is never called; reading here changes nothing in the machine (the same rule as the text screen),
 * and the primary's and the backup's pictures are identical. Standard VGA graphics modes (planar,
 * mode 13h) are not decoded: `undefined`.
 */
import { promisify } from "node:util";
import { crc32, deflate } from "node:zlib";

const deflateAsync = promisify(deflate);

export interface GraphicsScreen {
  width: number;
  height: number;
  bpp: number;
  /** width × height pixels, R G B A. */
  rgba: Uint8Array;
}

/** The parts of v86's VGAScreen read here (property names as in v86's vga.js). */
interface SvgaDevice {
  svga_enabled: boolean;
  svga_width: number;
  svga_height: number;
  svga_bpp: number;
  svga_offset: number;
  svga_memory: Uint8Array;
  vga256_palette: Int32Array;
}

/** Pixels beyond this are not read (v86's own limit is 2560 × 1600). */
const pixelsMax = 2560 * 1600;

export function readGraphicsScreen(vga: unknown): GraphicsScreen | undefined {
  const v = vga as SvgaDevice;
  const { svga_width: width, svga_height: height, svga_bpp: bpp } = v;
  if (!v.svga_enabled || !(width > 0 && height > 0) || width * height > pixelsMax) return undefined;
  const bytesPer = bpp === 15 ? 2 : bpp / 8;
  if (![1, 2, 3, 4].includes(bytesPer)) return undefined;
  const mem = v.svga_memory;
  const rgba = new Uint8Array(width * height * 4);
  let at = v.svga_offset * bytesPer; // v86 keeps the panning offset in pixels
  for (let i = 0; i < width * height; i++, at += bytesPer) {
    let r = 0;
    let g = 0;
    let b = 0;
    if (at + bytesPer <= mem.length) {
      if (bytesPer >= 3) {
        b = mem[at]!;
        g = mem[at + 1]!;
        r = mem[at + 2]!;
      } else if (bytesPer === 2) {
        const p = mem[at]! | (mem[at + 1]! << 8);
        if (bpp === 16) {
          r = ((p >> 11) & 31) << 3;
          g = ((p >> 5) & 63) << 2;
          b = (p & 31) << 3;
        } else {
          r = ((p >> 10) & 31) << 3;
          g = ((p >> 5) & 31) << 3;
          b = (p & 31) << 3;
        }
      } else {
        const c = v.vga256_palette[mem[at]!] ?? 0;
        r = (c >> 16) & 0xff;
        g = (c >> 8) & 0xff;
        b = c & 0xff;
      }
    }
    rgba[i * 4] = r;
    rgba[i * 4 + 1] = g;
    rgba[i * 4 + 2] = b;
    rgba[i * 4 + 3] = 255;
  }
  return { width, height, bpp, rgba };
}

/**
 * The picture as a PNG (8-bit RGBA, no filter, fast compression), compressed off the event loop
 * (zlib's thread pool): a node's event loop carries its heartbeats.
 */
export async function encodePng(s: { width: number; height: number; rgba: Uint8Array }): Promise<Buffer> {
  const chunk = (type: string, data: Uint8Array) => {
    const head = Buffer.alloc(8);
    head.writeUInt32BE(data.length, 0);
    head.write(type, 4, "latin1");
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])) >>> 0, 0);
    return Buffer.concat([head, data, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(s.width, 0);
  ihdr.writeUInt32BE(s.height, 4);
  ihdr.set([8, 6, 0, 0, 0], 8); // 8 bits, RGBA, deflate, no filter, no interlace
  const stride = s.width * 4;
  const raw = Buffer.alloc((stride + 1) * s.height);
  for (let y = 0; y < s.height; y++) raw.set(s.rgba.subarray(y * stride, (y + 1) * stride), y * (stride + 1) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk("IHDR", ihdr), chunk("IDAT", await deflateAsync(raw, { level: 1 })), chunk("IEND", new Uint8Array(0))]);
}
