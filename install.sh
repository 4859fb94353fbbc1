#!/usr/bin/env bash
# install.sh: builds mars from this checkout and installs the one binary (idempotent).
set -euo pipefail

usage() {
  cat <<'USAGE'
Usage: ./install.sh [--prefix DIR] [--help]

Builds the mars binary from this checkout and installs it as PREFIX/bin/mars.
Bun is taken from PATH, or fetched from the npm package "bun" into ./.tools when missing
(nothing else is downloaded). Dependencies come from bun.lock. Running it again is harmless.

  --prefix DIR   install below DIR (default /usr/local); the binary goes to DIR/bin/mars
  --help         show this text
USAGE
}

prefix=/usr/local
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) [ $# -ge 2 ] || { usage >&2; exit 2; }; prefix=$2; shift 2 ;;
    --prefix=*) prefix=${1#--prefix=}; shift ;;
    --help|-h) usage; exit 0 ;;
    *) echo "install.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

cd "$(dirname "$0")"
source scripts/ensure-bun.sh
bun install --frozen-lockfile >/dev/null
bun run build
mkdir -p "$prefix/bin"
install -m 0755 dist/mars "$prefix/bin/mars.new"
mv -f "$prefix/bin/mars.new" "$prefix/bin/mars"
echo "installed $prefix/bin/mars ($("$prefix/bin/mars" --version))"

# The engine as a systemd service, where systemd runs (Type=notify: mars run sends READY=1).
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  unit_dir=${MARS_SYSTEMD_UNIT_DIR:-/etc/systemd/system}
  mkdir -p "$unit_dir"
  cat > "$unit_dir/mars.service.new" <<UNIT
[Unit]
Description=mars replication engine
After=network-online.target
Wants=network-online.target

[Service]
Type=notify
ExecStart=$prefix/bin/mars run --home \${MARS_HOME}
Environment=MARS_HOME=/var/lib/mars
Restart=on-failure
RestartSec=2
KillSignal=SIGTERM
TimeoutStopSec=60

[Install]
WantedBy=multi-user.target
UNIT
  mv -f "$unit_dir/mars.service.new" "$unit_dir/mars.service"
  systemctl daemon-reload || true
  echo "installed $unit_dir/mars.service (enable with: systemctl enable --now mars)"
fi
