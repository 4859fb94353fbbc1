#!/usr/bin/env bash
# Installs the real NBD clients, peers and guest tooling the tests drive, only when missing.
set -euo pipefail
declare -A package_of=(
  [qemu-io]=qemu-utils [nbdinfo]=libnbd-bin [nbdcopy]=libnbd-bin [nbdfuse]=libnbd-bin
  [nbdkit]=nbdkit [fio]=fio [qemu-system-x86_64]=qemu-system-x86 [socat]=socat
  [mkfs.ext4]=e2fsprogs [fusermount3]=fuse3 [cpio]=cpio [xz]=xz-utils [depmod]=kmod
  [ip]=iproute2
)
missing=()
for tool in "${!package_of[@]}"; do
  command -v "$tool" >/dev/null 2>&1 || PATH="$PATH:/usr/sbin:/sbin" command -v "$tool" \
    >/dev/null 2>&1 || missing+=("${package_of[$tool]}")
done
[ -e /bin/busybox ] || missing+=(busybox-static)
/usr/bin/python3 -c 'import nbd' 2>/dev/null || missing+=(python3-libnbd)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
if [ "$(id -u)" != 0 ]; then
  echo "test tools missing: ${missing[*]} (install them as root: apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing test tools: ${missing[*]}" >&2
apt-get update -qq >&2
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
