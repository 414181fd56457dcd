#!/usr/bin/env bash
# Builds the two kinds of image a user boots through the BIOS, from the bundled linux guest's kernel
# and initramfs and Debian's boot loaders:
#
#   OUTDIR/boot-disk.img  a bootable hard disk: an MBR (syslinux's mbr.bin), one active ext2
#                         partition from 1 MiB with extlinux, /boot/bzImage and /boot/initramfs.cpio
#   OUTDIR/boot.iso       a bootable CD (El Torito, no emulation): isolinux and the same two files
#
#   scripts/build-boot-images.sh OUTDIR [DISK_MIB]        (default 24 MiB)
#
# Needs root (extlinux installs on a mounted filesystem: a loop device) and Debian's extlinux,
# syslinux-common, isolinux, xorriso and e2fsprogs. The tests run it into a temp directory; nothing
# it makes is committed (both images are a few MB of the committed kernel and initramfs).
set -euo pipefail
out=${1:?usage: build-boot-images.sh OUTDIR [DISK_MIB]}
disk_mib=${2:-24}
here=$(cd "$(dirname "$0")/.." && pwd)
kernel="$here/disk-images/linux/bzImage"
initrd="$here/disk-images/linux/initramfs.cpio"
# the bundled machine's kernel command line (machine.json), for both boot loaders
cmdline=$(node -e 'process.stdout.write(require(process.argv[1]).cmdline)' "$here/disk-images/linux/machine.json")
for tool in extlinux xorriso mke2fs losetup; do
  command -v "$tool" >/dev/null || { echo "build-boot-images: $tool missing (apt-get install extlinux syslinux-common isolinux xorriso e2fsprogs)" >&2; exit 2; }
done
mbr=/usr/lib/syslinux/mbr/mbr.bin
isolinux=/usr/lib/ISOLINUX/isolinux.bin
ldlinux=/usr/lib/syslinux/modules/bios/ldlinux.c32
for f in "$mbr" "$isolinux" "$ldlinux"; do [ -f "$f" ] || { echo "build-boot-images: $f missing (apt-get install syslinux-common isolinux)" >&2; exit 2; }; done
# the same boot loader configuration for extlinux and isolinux: serial console, the bundled kernel
boot_config() {
  printf 'SERIAL 0 115200\nDEFAULT linux\nTIMEOUT 0\nLABEL linux\n  LINUX /boot/bzImage\n  INITRD /boot/initramfs.cpio\n  APPEND %s\n' "$cmdline"
}
mkdir -p "$out"
work=$(mktemp -d)
mnt="$work/mnt"
loop=
cleanup() {
  if mountpoint -q "$mnt" 2>/dev/null; then umount "$mnt"; fi
  if [ -n "$loop" ]; then losetup -d "$loop" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# ---- the hard disk: MBR + partition table by hand (no fdisk needed), ext2 from 1 MiB
img="$out/boot-disk.img"
part_start=2048
sectors=$((disk_mib * 2048 - part_start))
rm -f "$img"
truncate -s "${disk_mib}M" "$img"
dd if="$mbr" of="$img" bs=440 count=1 conv=notrunc status=none
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
# entry 1: active, CHS "use LBA" markers, type 0x83 (Linux), LBA start and length; then the boot signature
printf "\\x80\\xfe\\xff\\xff\\x83\\xfe\\xff\\xff$(le32 $part_start)$(le32 $sectors)" | dd of="$img" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$img" bs=1 seek=510 conv=notrunc status=none
mkdir -p "$work/root/boot/extlinux" "$mnt"
cp "$kernel" "$work/root/boot/bzImage"
cp "$initrd" "$work/root/boot/initramfs.cpio"
boot_config > "$work/root/boot/extlinux/extlinux.conf"
loop=$(losetup --find --show --offset $((part_start * 512)) --sizelimit $((sectors * 512)) "$img")
mke2fs -q -t ext2 -L lockstep-boot -d "$work/root" "$loop"
mount "$loop" "$mnt"
extlinux --install "$mnt/boot/extlinux" >/dev/null
umount "$mnt"
losetup -d "$loop"
loop=
# extlinux read the partition's start from a loop device of its own (offset 0): tell its boot
# sector where the partition really starts (the FAT-style "hidden sectors" field at byte 28)
printf "$(le32 $part_start)" | dd of="$img" bs=1 seek=$((part_start * 512 + 28)) conv=notrunc status=none

# ---- the CD: isolinux, El Torito no-emulation boot
iso_root="$work/iso"
mkdir -p "$iso_root/isolinux" "$iso_root/boot"
cp "$isolinux" "$ldlinux" "$iso_root/isolinux/"
cp "$kernel" "$iso_root/boot/bzImage"
cp "$initrd" "$iso_root/boot/initramfs.cpio"
boot_config > "$iso_root/isolinux/isolinux.cfg"
# fixed times and no Rock Ridge times: the same inputs give the same ISO (its sha256 names it)
SOURCE_DATE_EPOCH=0 xorriso -as mkisofs -quiet -o "$out/boot.iso" -V LOCKSTEP_BOOT \
  -b isolinux/isolinux.bin -c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
  "$iso_root"
echo "$img"
echo "$out/boot.iso"
