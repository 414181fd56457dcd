#!/usr/bin/env bash
# Rebuilds every committed guest image of disk-images/ from Debian packages.
#
#   scripts/build-images.sh [tiny|vga|linux|initramfs|bios|all]     (default: all; linux includes initramfs)
#
# Needs (Debian 12): dpkg --add-architecture i386; apt-get install nasm cpio bc flex bison
# libelf-dev xz-utils gcc make. Downloads (apt-get download, no install) linux-source-6.1,
# busybox-static:i386 and seabios. The linux kernel takes ~7 minutes on 2 cores.
# Not run by CI: the outputs are committed together with their sha256 in each machine config.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
images="$here/disk-images"
work="${LOCKSTEP_BUILD_DIR:-/tmp/lockstep-image-build}"
what="${1:-all}"
mkdir -p "$work/debs"

fetch_deb() { # package -> extracted dir
  local pkg=$1 dir="$work/pkg-${1//[:]/-}"
  if [ ! -d "$dir" ]; then
    (cd "$work/debs" && apt-get download -q "$pkg" >/dev/null)
    local deb
    deb=$(ls -t "$work/debs/${pkg%%:*}"_*.deb | head -1)
    mkdir -p "$dir" && dpkg-deb -x "$deb" "$dir"
    dpkg-deb -f "$deb" Package Version Architecture | tr '\n' ' ' > "$dir.version"
  fi
  echo "$dir"
}

build_bios() {
  local d; d=$(fetch_deb seabios)
  mkdir -p "$images/bios"
  cp "$d/usr/share/seabios/bios.bin" "$d/usr/share/seabios/vgabios-stdvga.bin" "$images/bios/"
  echo "bios: $(cat "$d.version")"
}

build_tiny() {
  nasm -f bin -o "$images/tiny/tiny.bin" "$images/tiny/tiny.asm"
  echo "tiny: nasm $(nasm -v | awk '{print $3}')"
}

build_vga() {
  nasm -f bin -o "$images/vga/vga.bin" "$images/vga/vga.asm"
  echo "vga: nasm $(nasm -v | awk '{print $3}')"
}

build_linux() {
  local src; src=$(fetch_deb linux-source-6.1)
  local tree="$work/linux"
  if [ ! -d "$tree" ]; then
    mkdir -p "$tree" && tar -xJf "$src"/usr/src/linux-source-6.1.tar.xz -C "$tree" --strip-components=1
  fi
  (cd "$tree" && make -s ARCH=i386 tinyconfig \
    && scripts/kconfig/merge_config.sh -m .config "$images/linux/kernel-config.fragment" >/dev/null \
    && make -s ARCH=i386 olddefconfig \
    && make -s ARCH=i386 -j"$(nproc)" bzImage)
  cp "$tree/arch/x86/boot/bzImage" "$images/linux/bzImage"
  # every line of the fragment must have survived olddefconfig
  grep '^CONFIG_' "$images/linux/kernel-config.fragment" | while read -r line; do
    grep -qx "$line" "$tree/.config" || { echo "config fragment line lost: $line" >&2; exit 1; }
  done
  echo "linux: $(cat "$src.version")"
  build_initramfs
}

build_initramfs() {
  local bb; bb=$(fetch_deb busybox-static:i386)
  local root="$work/initramfs"
  rm -rf "$root" && mkdir -p "$root"/{bin,dev,proc,sys,mnt,etc,tmp,root}
  cp "$bb/bin/busybox" "$root/bin/busybox"
  cp "$images/linux/init" "$root/init" && chmod 755 "$root/init"
  cp "$images/linux/profile" "$root/etc/profile"
  mkdir -p "$root/www/cgi-bin"
  cp "$images/linux/net/index.html" "$root/www/index.html"
  install -m 755 "$images/linux/net/count.cgi" "$root/www/cgi-bin/count"
  install -m 755 "$images/linux/net/numbers" "$root/bin/numbers"
  # reproducible archive: fixed mtimes, sorted names, fixed owner. Left uncompressed: the
  # kernel unpacks it faster than it could inflate it, and git compresses it anyway.
  find "$root" -exec touch -h -d @0 {} +
  (cd "$root" && find . | LC_ALL=C sort | cpio -o -H newc --owner 0:0 --reproducible --quiet) \
    > "$images/linux/initramfs.cpio"
  echo "busybox: $(cat "$bb.version")"
}

case "$what" in
  bios) build_bios ;;
  tiny) build_tiny ;;
  vga) build_vga ;;
  linux) build_linux ;;
  initramfs) build_initramfs ;;
  all) build_bios; build_tiny; build_vga; build_linux ;;
  *) echo "usage: $0 [tiny|vga|linux|initramfs|bios|all]" >&2; exit 2 ;;
esac
node "$here/scripts/update-image-hashes.mjs"
