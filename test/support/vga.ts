// The bundled VGA-only guest (disk-images/vga: a multiboot kernel that draws at 0xB8000 and echoes
// PS/2 keys): the screen its own text buffer holds after keys are typed, read in this process.
import { scancodesFor } from "../../emulator/scancodes.js";
import { screenText } from "../../emulator/text-screen.js";
import { defaultClockParams } from "../../hypervisor/machine-session.js";
import { RecordingMachine } from "../../hypervisor/machine-thread/recording-machine.js";

/** The screen's 25 lines (trailing blanks cut) once `typed` has been typed at its prompt. */
export async function vgaScreenAfter(typed: string): Promise<string[]> {
  const m = await RecordingMachine.start({ image: "vga", clock: defaultClockParams(1_700_000_000_000, 1), paced: false, digestEverySlices: 0 });
  const deadline = performance.now() + 30_000;
  const screenWith = async (text: string): Promise<string> => {
    for (;;) {
      const s = await m.screen();
      if (s && screenText(s).includes(text)) return screenText(s);
      if (!s || performance.now() > deadline) throw new Error(`the machine's screen never showed ${JSON.stringify(text)}`);
    }
  };
  try {
    await screenWith("type here:");
    m.keys(scancodesFor(typed));
    const last = typed.split("\n").at(-1)!;
    return (await screenWith(last)).split("\n");
  } finally {
    await m.stop();
  }
}

/** The 25 lines of the screen shown in a terminal pane, from the line with the guest's title on. */
export function paneScreen(pane: string): string[] {
  const lines = pane.split("\n");
  const start = lines.findIndex((l) => l.includes("lockstep VGA test"));
  return start < 0 ? [] : lines.slice(start, start + 25).map((l) => l.replace(/\s+$/, ""));
}
