# What the guest scenarios share (sourced; each scenario defines fail() for its own logs).
# shellcheck shell=sh

wait_for() { # DESCRIPTION COMMAND...: up to 60 s
  what=$1
  shift
  for _ in $(seq 600); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  fail "not within 60 s: $what"
}
# Whether /dev/mars/r1 leads to a block device (the export is attached).
linked() { [ -b "$(readlink -f /dev/mars/r1)" ]; }
