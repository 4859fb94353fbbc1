#!/bin/sh
# Runs inside the test guest: two engines (alpha, beta) on loopback, the primary's export on the
# kernel's /dev/nbdN. A handover is refused (exit 4, naming the device) while the old primary's
# device is mounted, open by a process, or claimed (a lazy umount), and succeeds once it is
# closed; --wait-closed waits.
# Prints "STEP roles <name>" lines the host test follows, and "SCENARIO PASSED" at the end.
set -eu
mars=${MARS_BINARY:-$PWD/dist/mars}
root=/tmp/roles-kernel
rm -rf "$root" && mkdir -p "$root" /mnt/roles
alpha="--home $root/alpha"
beta="--home $root/beta"
step() { echo "STEP roles $* (guest time $(cut -d" " -f1 /proc/uptime) s)"; }
fail() {
  echo "SCENARIO FAILED: $*"
  for name in alpha beta; do echo "--- $name engine ---"; tail -n 40 "$root/$name.log"; done
  exit 1
}
engines=""
start_engine() {
  "$mars" run --home "$root/$1" >> "$root/$1.log" 2>&1 &
  engines="$engines $!"
  wait_for "$1's engine" test -S "$root/$1/control.sock"
}
# shellcheck source=scenario-lib.sh
. "$(dirname "$0")/scenario-lib.sh"
# Runs `mars primary r1` on HOME-WORDS; prints its output and leaves its exit code in $code.
primary() {
  set +e
  # shellcheck disable=SC2086
  "$mars" primary r1 "$@" > "$root/primary.out" 2>&1
  code=$?
  set -e
  sed 's/^/  | /' "$root/primary.out"
}

step setup
modprobe nbd nbds_max=4
truncate -s 32M "$root/alpha.img" "$root/beta.img"
# shellcheck disable=SC2086
"$mars" create-cluster --host alpha --listen 127.0.0.1:7811 $alpha > /dev/null
start_engine alpha
# shellcheck disable=SC2086
"$mars" create-resource r1 "$root/alpha.img" $alpha > /dev/null
wait_for "alpha's kernel device" linked
# shellcheck disable=SC2086
"$mars" join-cluster 127.0.0.1:7811 --secret-file "$root/alpha/cluster-secret" --host beta \
  --listen 127.0.0.1:7812 $beta > /dev/null
start_engine beta
wait_for "beta to see r1" sh -c "'$mars' view --home '$root/beta' | grep -q r1"
# shellcheck disable=SC2086
"$mars" join-resource r1 "$root/beta.img" $beta > /dev/null
# shellcheck disable=SC2086
"$mars" wait-sync r1 --all --timeout 120 $alpha || fail "the first sync did not finish"
old_device=$(readlink /dev/mars/r1)
echo "alpha exports r1 at $old_device"

step filesystem
mkfs.ext4 -q -F -E nodiscard /dev/mars/r1
mount /dev/mars/r1 /mnt/roles
dd if=/dev/urandom of=/mnt/roles/data bs=64k count=16 status=none
sync
(cd /mnt/roles && sha256sum data) > "$root/data.sum"

step refused-mounted
primary $beta --timeout 20
[ "$code" = 4 ] || fail "handover while mounted: exit $code, wanted 4"
grep -q "open on alpha" "$root/primary.out" || fail "the refusal does not say where"
grep -q "$old_device mounted at /mnt/roles" "$root/primary.out" ||
  fail "the refusal does not name the mounted device"

step handover-after-umount
umount /mnt/roles
primary $beta --timeout 60
[ "$code" = 0 ] || fail "handover after umount: exit $code"
wait_for "beta's kernel device" linked
new_device=$(readlink /dev/mars/r1)
echo "beta exports r1 at $new_device"
mount /dev/mars/r1 /mnt/roles
(cd /mnt/roles && sha256sum -c --quiet "$root/data.sum") || fail "data changed in the handover"
umount /mnt/roles

step refused-open
sleep 600 < /dev/mars/r1 &
holder=$!
sleep 2   # the periodic look (every second while nothing holds it) publishes the holder
primary $alpha --timeout 20
[ "$code" = 4 ] || fail "handover while open: exit $code, wanted 4"
grep -q "$new_device open by pid $holder (sleep)" "$root/primary.out" ||
  fail "the refusal does not name the process holding the device"

step wait-closed
set +e
"$mars" primary r1 --wait-closed --timeout 90 --home "$root/alpha" > "$root/waiting.out" 2>&1 &
waiting=$!
set -e
sleep 4
kill -0 "$waiting" 2>/dev/null || { cat "$root/waiting.out"; fail "--wait-closed did not wait"; }
"$mars" view r1 --json --home "$root/beta" | grep -q "\"role\": *\"primary\"" ||
  fail "beta stepped down under an open device"
kill "$holder"
wait "$holder" 2>/dev/null || true
wait "$waiting" || { cat "$root/waiting.out"; fail "--wait-closed handover failed"; }
sed 's/^/  | /' "$root/waiting.out"
wait_for "alpha's kernel device again" linked
mount /dev/mars/r1 /mnt/roles
(cd /mnt/roles && sha256sum -c --quiet "$root/data.sum") || fail "data changed in the handover"
umount /mnt/roles

step refused-claimed
# A file system unmounted lazily while a file on it is open: no mount table shows it, no
# process holds the device itself; only the O_EXCL claim alpha tries before stepping down
# finds it, and the handover is refused after it began (alpha keeps exporting).
mount /dev/mars/r1 /mnt/roles
sleep 600 < /mnt/roles/data &
lazy=$!
umount -l /mnt/roles
primary $beta --timeout 30
[ "$code" = 4 ] || fail "handover under a lazily unmounted file system: exit $code, wanted 4"
grep -q "claimed by another holder" "$root/primary.out" || fail "the refusal does not say why"
sleep 1
"$mars" view r1 --json --home "$root/alpha" | grep -q "\"role\": *\"primary\"" ||
  fail "alpha is not primary any more"
[ -b /dev/mars/r1 ] || fail "alpha stopped exporting under a claimed device"
kill "$lazy"
wait "$lazy" 2>/dev/null || true

step stop
# shellcheck disable=SC2086
"$mars" view r1 $alpha
for pid in $engines; do kill -TERM "$pid"; done
for pid in $engines; do wait "$pid" || fail "an engine did not exit 0 on SIGTERM"; done
for _ in $(seq 100); do [ -e /dev/mars/r1 ] || break; sleep 0.1; done
[ ! -e /dev/mars/r1 ] || fail "the stable name stayed behind"
echo "SCENARIO PASSED"
