// The VGA test guest switched to a VBE graphics mode (F1: 320x200, 32 bits per pixel, 16 bars in
// the CGA colours): the machine's pixels read from outside are the bars, in order; the text views
// say the screen is graphical; the PNG made of it decodes back to the same pixels.
import { inflateSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { screenText } from "../../emulator/text-screen.js";
import { encodePng, type GraphicsScreen } from "../../emulator/vga-graphics.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";

const cga = [0x000000, 0x0000aa, 0x00aa00, 0x00aaaa, 0xaa0000, 0xaa00aa, 0xaa5500, 0xaaaaaa, 0x555555, 0x5555ff, 0x55ff55, 0x55ffff, 0xff5555, 0xff55ff, 0xffff55, 0xffffff];
const pixel = (g: { width: number; rgba: Uint8Array }, x: number, y: number) => {
  const i = (y * g.width + x) * 4;
  return (g.rgba[i]! << 16) | (g.rgba[i + 1]! << 8) | g.rgba[i + 2]!;
};

describe("a VBE graphics mode", () => {
  it("reads the guest's framebuffer as pixels and a PNG; the text views say it is graphical", async () => {
    const m = await RecordingMachine.start({ image: "vga", clock: defaultClockParams(1_700_000_000_000, 1), paced: false, digestEverySlices: 0 });
    try {
      for (let s = await m.screen(); !s || !screenText(s).includes("type here:"); s = await m.screen()) if (!s) throw new Error("the machine ended");
      expect(await m.graphics()).toBeNull(); // text mode: no pixels
      m.keys(Uint8Array.of(0x3b, 0xbb)); // F1
      let g: GraphicsScreen | null | undefined = null;
      for (let tries = 0; tries < 2000 && !(g && pixel(g, 319, 199) === 0xffffff); tries++) g = await m.graphics();
      expect(g).toBeTruthy();
      const shot = g!;
      expect([shot.width, shot.height, shot.bpp]).toEqual([320, 200, 32]);
      for (let bar = 0; bar < 16; bar++) for (const y of [0, 100, 199]) expect(pixel(shot, bar * 20 + 10, y), `bar ${bar} at y ${y}`).toBe(cga[bar]);
      expect((await m.screen())!.graphical).toBe(true);

      const png = await encodePng(shot);
      expect(png.subarray(0, 8)).toEqual(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([320, 200]);
      const idatLength = png.readUInt32BE(33);
      expect(png.subarray(37, 41).toString("latin1")).toBe("IDAT");
      const raw = inflateSync(png.subarray(41, 41 + idatLength));
      expect(raw.length).toBe(200 * (320 * 4 + 1));
      for (let y = 0; y < 200; y += 37) expect(raw.subarray(y * 1281 + 1, (y + 1) * 1281)).toEqual(Buffer.from(shot.rgba.subarray(y * 1280, (y + 1) * 1280)));
    } finally {
      await m.stop();
    }
  }, 120_000);
});
