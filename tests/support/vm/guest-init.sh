#!/bin/busybox sh
# /init of the test guest's initramfs: builds a root from the host's / (read-only, with a RAM
# overlay), mounts the project directory read-write at its host path, runs the command, and
# hands its exit status back through the control share before powering off.
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
while read -r module; do
  modprobe "$module" 2>/dev/null || echo "guest-init: cannot load $module"
done < /modules.list

share_options=trans=virtio,version=9p2000.L,msize=512000
if ! mount -t 9p -o "$share_options" control /control; then
  echo "guest-init: no control share"
  poweroff -f
fi
give_up() { echo "guest-init: $*"; echo 125 > /control/status; poweroff -f; }
. /control/environment
mount -t 9p -o "$share_options,ro" hostroot /host || give_up "cannot mount the host root"
mount -t 9p -o "$share_options" project /project || give_up "cannot mount the project"
mount -t tmpfs -o size=70% scratch /scratch && mkdir -p /scratch/upper /scratch/work
mount -t overlay -o lowerdir=/host,upperdir=/scratch/upper,workdir=/scratch/work overlay /root \
  || give_up "cannot build the overlay root"

root=/root
for point in dev proc sys; do mount --move /$point $root/$point; done
mount -t devpts devpts $root/dev/pts 2>/dev/null
mkdir -p $root/dev/shm
for point in tmp run dev/shm; do mount -t tmpfs tmpfs $root/$point; done
rm -rf $root/lib/modules && mkdir -p $root/lib/modules && cp -a /lib/modules/. $root/lib/modules/
mkdir -p "$root$GUEST_DIRECTORY" && mount --move /project "$root$GUEST_DIRECTORY"
mkdir -p $root/run/guest-control && mount --move /control $root/run/guest-control
ip link set lo up 2>/dev/null

console=$root/dev/hvc0
[ -e $console ] || console=$root/dev/console
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
chroot $root /bin/sh -c 'cd "$GUEST_DIRECTORY" && exec /bin/sh /run/guest-control/command' \
  < /dev/null > $console 2>&1
echo $? > $root/run/guest-control/status
sync
umount "$root$GUEST_DIRECTORY" 2>/dev/null
poweroff -f
