#!/bin/sh
# Runs inside the test guest: one engine exports r1 on the kernel's /dev/nbdN with ext4 mounted
# on it; `mars resize` grows the disk's resource from 32 to 64 MiB and the kernel device grows
# with it at once (netlink RECONFIGURE with SIZE_BYTES); resize2fs then grows the filesystem.
# Prints "STEP resize <name>" lines and "SCENARIO PASSED" at the end.
set -eu
mars=${MARS_BINARY:-$PWD/dist/mars}
root=/tmp/resize-kernel
rm -rf "$root" && mkdir -p "$root" /mnt/resize
home="--home $root/alpha"
step() { echo "STEP resize $* (guest time $(cut -d" " -f1 /proc/uptime) s)"; }
fail() {
  echo "SCENARIO FAILED: $*"
  tail -n 40 "$root/alpha.log"
  exit 1
}
# shellcheck source=scenario-lib.sh
. "$(dirname "$0")/scenario-lib.sh"
device_bytes() { blockdev --getsize64 "$(readlink -f /dev/mars/r1)"; }

step setup
modprobe nbd nbds_max=4
truncate -s 32M "$root/alpha.img"
# shellcheck disable=SC2086
"$mars" create-cluster --host alpha --listen 127.0.0.1:7821 $home > /dev/null
"$mars" run --home "$root/alpha" >> "$root/alpha.log" 2>&1 &
engine=$!
wait_for "the engine" test -S "$root/alpha/control.sock"
# shellcheck disable=SC2086
"$mars" create-resource r1 "$root/alpha.img" $home > /dev/null
wait_for "the kernel device" linked
[ "$(device_bytes)" = 33554432 ] || fail "the device has $(device_bytes) bytes, not 32 MiB"
mkfs.ext4 -q "$(readlink -f /dev/mars/r1)"
mount "$(readlink -f /dev/mars/r1)" /mnt/resize
dd if=/dev/urandom of=/mnt/resize/before bs=1M count=8 status=none
sync

step resize
truncate -s 64M "$root/alpha.img"
# shellcheck disable=SC2086
"$mars" resize r1 $home | sed 's/^/  | /'
wait_for "the kernel device at 64 MiB" sh -c "[ \"\$(blockdev --getsize64 \
  \"\$(readlink -f /dev/mars/r1)\")\" = 67108864 ]"
echo "  | kernel device: $(device_bytes) bytes"

step filesystem
resize2fs "$(readlink -f /dev/mars/r1)" > /dev/null 2>&1 || fail "resize2fs failed"
dd if=/dev/urandom of=/mnt/resize/after bs=1M count=40 status=none || fail "no room after"
sync
sum_before=$(sha256sum < /mnt/resize/before)
umount /mnt/resize
e2fsck -fn "$(readlink -f /dev/mars/r1)" > /dev/null 2>&1 || fail "e2fsck found problems"
mount "$(readlink -f /dev/mars/r1)" /mnt/resize
[ "$(sha256sum < /mnt/resize/before)" = "$sum_before" ] || fail "the file before changed"
umount /mnt/resize

step stop
kill -TERM "$engine"
wait "$engine" || fail "the engine did not stop cleanly"
echo "SCENARIO PASSED"
