#!/usr/bin/env bash
# `npm test`: sets up what the suite needs (Bun, dependencies, test tools, the binary), runs every
# test, and ends with the line "N passed, N failed". Arguments go to `bun test` (e.g. a path).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/ensure-bun.sh
export PATH="$PATH:/usr/sbin:/sbin"  # mkfs.ext4, losetup and ip live there
bash scripts/test-tools.sh
bun install --frozen-lockfile >/dev/null
bun run build
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
bun test --timeout 30000 "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '^ *[0-9]+ pass$' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0)
failed=$(grep -Eo '^ *[0-9]+ fail$' "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0)
if [ "$status" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
if [ "$failed" != 0 ]; then
  # CI keeps only the tail of the output: repeat each failure's own lines (its error and
  # whatever the test printed) just above the closing line, at most 80 lines each.
  echo "--- the failures again ---"
  awk '/^\((pass|skip)\)/ { n = 0; next }
       /^\(fail\)/ { start = n > 80 ? n - 80 : 0; for (i = start; i < n; i++) print buf[i];
                     print; print ""; n = 0; next }
       { buf[n++] = $0 }' "$log"
fi
echo "$passed passed, $failed failed"
exit "$status"
