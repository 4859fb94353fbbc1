#!/bin/sh
# Runs inside the test guest: mars attaches /dev/nbdN over netlink, ext4 on top, the server is
# killed with -9 under a running writer, restarted (RECONFIGURE), and nothing synced is lost.
# Usage: nbd-kernel-scenario.sh [file|translog]  (translog: writes go through --log-dir)
# Prints "STEP <name>" lines the host test follows, and "SCENARIO PASSED" at the end.
set -eu
variant=${1:-file}
mars=${MARS_BINARY:-$PWD/dist/mars}
disk=/tmp/disk-$variant.img
log=/tmp/serve-$variant.log
synced=/tmp/synced-$variant.list
through_log=""
device_choice=auto   # the kernel picks a free device
if [ "$variant" = translog ]; then
  through_log="--log-dir /tmp/log-$variant"
  device_choice=1    # a requested device, also on the restart
fi
step() { echo "STEP $variant $* (guest time $(cut -d" " -f1 /proc/uptime) s)"; }
fail() { echo "SCENARIO FAILED: $*"; cat "$log" 2>/dev/null; exit 1; }

start_server() {
  # shellcheck disable=SC2086 # $through_log is two words or none
  "$mars" serve --disk "$disk" --size 128M --name vmtest --nbd-device $device_choice \
    --dead-timeout 120 --request-timeout 5 \
    $through_log >> "$log" 2>&1 &
  server=$!
  for _ in $(seq 600); do
    grep -q "^ready:" "$log" 2>/dev/null && [ "$(grep -c '^ready:' "$log")" -ge "$1" ] && return 0
    kill -0 "$server" 2>/dev/null || fail "mars serve exited early"
    sleep 0.1
  done
  fail "mars serve did not become ready"
}

step modprobe
modprobe nbd nbds_max=4
[ -e /dev/mars/vmtest ] && fail "a previous run left /dev/mars/vmtest"

step attach
start_server 1
grep "attached /dev/nbd" "$log"
device=$(readlink /dev/mars/vmtest)
case $device in /dev/nbd[0-9]*) ;; *) fail "no stable name (got '$device')";; esac
if [ "$device_choice" != auto ] && [ "$device" != "/dev/nbd$device_choice" ]; then
  fail "asked for nbd$device_choice, got $device"
fi
[ "$(cat /sys/block/${device#/dev/}/size)" = $((128 * 2048)) ] || fail "wrong size"

step filesystem
mkfs.ext4 -q -F -E nodiscard /dev/mars/vmtest
mkdir -p /mnt/vm
mount /dev/mars/vmtest /mnt/vm
for i in 1 2 3 4; do dd if=/dev/urandom of=/mnt/vm/before$i bs=128k count=4 status=none; done
sync
(cd /mnt/vm && sha256sum before*) > $synced
umount /mnt/vm
mount /dev/mars/vmtest /mnt/vm
(cd /mnt/vm && sha256sum -c --quiet $synced) || fail "files changed across remount"

step writer
rm -f /tmp/stop-writer-$variant
(
  i=0
  while [ ! -e /tmp/stop-writer-$variant ]; do
    dd if=/dev/urandom of=/mnt/vm/w$i bs=64k count=4 conv=fsync status=none
    (cd /mnt/vm && sha256sum w$i) >> $synced
    i=$((i + 1))
  done
) &
writer=$!
sleep 1

if [ "$variant" = file ]; then
  step stall
  # A server that stops answering: the kernel drops the socket after --request-timeout (5 s),
  # and mars, once it runs again, attaches a fresh socket by itself.
  kill -STOP "$server"
  sleep 7
  kill -CONT "$server"
  for _ in $(seq 300); do grep -q "re-attaching" "$log" && break; sleep 0.1; done
  grep -q "re-attaching" "$log" || fail "mars did not re-attach after the kernel dropped it"
  stalled=$(wc -l < $synced)
  for _ in $(seq 300); do [ "$(wc -l < $synced)" -gt "$stalled" ] && break; sleep 0.1; done
  [ "$(wc -l < $synced)" -gt "$stalled" ] || fail "the writer is stuck after the re-attach"
fi

step kill-9
kill -9 "$server"
wait "$server" 2>/dev/null || true
before=$(wc -l < $synced)
sleep 1

step restart
start_server 2
grep -q "(re-attached)" "$log" || fail "the restart did not re-attach"
[ "$(readlink /dev/mars/vmtest)" = "$device" ] || fail "the device changed"
sleep 2
touch /tmp/stop-writer-$variant
wait "$writer" || fail "the writer failed"
after=$(wc -l < $synced)
echo "files synced: $before before the kill, $after in total"
[ "$after" -gt "$before" ] || fail "the writer made no progress after the restart"

step verify
sync
umount /mnt/vm
fsck.ext4 -n -f /dev/mars/vmtest || fail "fsck found damage"
mount -o ro /dev/mars/vmtest /mnt/vm
(cd /mnt/vm && sha256sum -c --quiet $synced) || fail "a synced file lost its content"
umount /mnt/vm

step stop
kill -TERM "$server"
wait "$server" || fail "mars serve did not exit 0 on SIGTERM"
[ ! -e /dev/mars/vmtest ] || fail "the stable name stayed behind"
grep -q "^stopped" "$log" || fail "no 'stopped' line"
echo "--- mars serve output ---"
cat "$log"
echo "SCENARIO PASSED"
