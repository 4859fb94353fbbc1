#!/usr/bin/env bash
# Runs a shell command as root inside a throw-away QEMU guest booted from Debian's stock kernel
# (which ships nbd.ko), for tests of the kernel nbd path on hosts whose kernel lacks it.
#
#   run-in-guest.sh [-t SECONDS] [-m MEBIBYTES] [-c CPUS] COMMAND...
#
# The guest's root is the host's / (read-only, RAM overlay on top); the current directory is
# shared read-write at the same path and the command starts there. Its output streams to our
# stdout; we exit with its status, 124 when the guest timed out, 125 when it did not boot.
# The kernel and initramfs are built once per kernel version into $MARS_VM_CACHE
# (default /tmp/mars-vm-cache); delete that directory to rebuild.
set -euo pipefail

timeout_seconds=240 memory_mebibytes=2048 cpus=2
while getopts "t:m:c:" option; do
  case $option in
    t) timeout_seconds=$OPTARG ;;
    m) memory_mebibytes=$OPTARG ;;
    c) cpus=$OPTARG ;;
    *) exit 2 ;;
  esac
done
shift $((OPTIND - 1))
[ $# -ge 1 ] || { sed -n '4,11p' "$0"; exit 2; }
command_text="$*"
here=$(cd "$(dirname "$0")" && pwd -P)
cache=${MARS_VM_CACHE:-/tmp/mars-vm-cache}
modules="virtio_pci virtio_console 9pnet_virtio 9p overlay crc32c_generic ext4 nbd"

require_tools() {
  local tool missing=()
  for tool in qemu-system-x86_64 cpio xz depmod dpkg-deb apt-get; do
    PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" >/dev/null || missing+=("$tool")
  done
  [ -x /bin/busybox ] || missing+=(busybox-static)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "run-in-guest: missing ${missing[*]} (see scripts/test-tools.sh)" >&2
    exit 125
  fi
}

# Prints the kernel package of Debian's default flavour, e.g. linux-image-6.1.0-56-amd64.
kernel_package() {
  apt-cache depends linux-image-amd64 2>/dev/null |
    awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

# Unpacks the kernel package and builds vmlinux (PVH-bootable) and a minimal initramfs.
build_guest() {
  local package=$1 version=$2 work=$cache/$version.building
  rm -rf "$work" && mkdir -p "$work" && cd "$work"
  apt-get download "$package" >/dev/null 2>&1 ||
    { echo "run-in-guest: apt-get download $package failed" >&2; return 1; }
  dpkg-deb -x ./*.deb unpacked
  PATH="$PATH:/usr/sbin:/sbin" depmod -b "$work/unpacked" "$version"
  mkdir -p initramfs/{bin,dev,proc,sys,host,project,control,scratch,root}
  cp /bin/busybox initramfs/bin/busybox
  ln -s bin initramfs/sbin
  local module
  for module in $modules; do   # one at a time: extra names would be taken as parameters
    PATH="$PATH:/usr/sbin:/sbin" modprobe -d "$work/unpacked" -S "$version" \
      --show-depends "$module"
  done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r path; do
    local relative=${path#"$work/unpacked"}
    mkdir -p "initramfs$(dirname "$relative")"
    cp "$path" "initramfs$relative"
  done
  cp unpacked/lib/modules/"$version"/modules.{order,builtin,builtin.modinfo} \
    initramfs/lib/modules/"$version"/
  PATH="$PATH:/usr/sbin:/sbin" depmod -b "$work/initramfs" "$version"
  printf '%s\n' $modules > initramfs/modules.list
  install -m 0755 "$here/guest-init.sh" initramfs/init
  (cd initramfs && find . | cpio -o -H newc 2>/dev/null | gzip -1) > initramfs.cpio.gz
  # The bzImage carries an xz-compressed ELF; booting that ELF through its PVH entry skips
  # real-mode setup and decompression, several seconds under emulation.
  local bzimage=unpacked/boot/vmlinuz-$version offset
  offset=$(grep -abo $'\xfd7zXZ\x00' "$bzimage" | head -n 1 | cut -d: -f1)
  tail -c +$((offset + 1)) "$bzimage" | xz -dc > vmlinux 2>/dev/null || true
  mkdir -p "$cache/$version"
  if [ "$(head -c 4 vmlinux | tail -c 3)" = ELF ]; then mv vmlinux "$cache/$version/"; fi
  mv "$bzimage" "$cache/$version/vmlinuz"
  mv initramfs.cpio.gz "$cache/$version/"
  cd "$cache" && rm -rf "$work"
}

require_tools
package=$(kernel_package)
[ -n "$package" ] || { echo "run-in-guest: no linux-image-amd64 in apt's lists" >&2; exit 125; }
version=${package#linux-image-}
mkdir -p "$cache"
(
  flock 9   # parallel runs build once
  if [ ! -f "$cache/$version/initramfs.cpio.gz" ] ||
    [ "$here/guest-init.sh" -nt "$cache/$version/initramfs.cpio.gz" ]; then
    echo "run-in-guest: building the guest for $version in $cache" >&2
    build_guest "$package" "$version" || exit 125
  fi
) 9> "$cache/.lock" || exit 125
kernel=$cache/$version/vmlinux
[ -f "$kernel" ] || kernel=$cache/$version/vmlinuz

project=$(pwd -P)
run=$(mktemp -d /tmp/mars-vm-run.XXXXXX)
trap 'rm -rf "$run"' EXIT
mkdir "$run/control"
printf '%s\n' "$command_text" > "$run/control/command"
printf 'export GUEST_DIRECTORY=%q\n' "$project" > "$run/control/environment"

firmware=()
[ -f /usr/share/qemu/qboot.rom ] && firmware=(-bios /usr/share/qemu/qboot.rom)
set +e
timeout --foreground -k 5 "$timeout_seconds" qemu-system-x86_64 \
  -accel tcg,thread=multi -cpu max -M q35 "${firmware[@]}" \
  -m "$memory_mebibytes" -smp "$cpus" -nodefaults -no-user-config -display none -no-reboot \
  -kernel "$kernel" -initrd "$cache/$version/initramfs.cpio.gz" \
  -append "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init" \
  -serial file:"$run/console.log" \
  -device virtio-serial-pci -chardev stdio,id=output,signal=off \
  -device virtconsole,chardev=output \
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap \
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot \
  -fsdev local,id=project,path="$project",security_model=none \
  -device virtio-9p-pci,fsdev=project,mount_tag=project \
  -fsdev local,id=control,path="$run/control",security_model=none \
  -device virtio-9p-pci,fsdev=control,mount_tag=control \
  < /dev/null
qemu_status=$?
set -e
if [ -s "$run/control/status" ]; then exit "$(cat "$run/control/status")"; fi
echo "run-in-guest: the guest reported no status (qemu exit $qemu_status); console:" >&2
tail -n 30 "$run/console.log" >&2 || true
[ "$qemu_status" = 124 ] && exit 124
exit 125
