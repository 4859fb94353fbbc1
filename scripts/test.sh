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
echo "$passed passed, $failed failed"
exit "$status"
