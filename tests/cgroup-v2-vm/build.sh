#!/usr/bin/env bash
# The cgroup v2 test node: a Debian VM (its own kernel from Debian's linux-image-amd64, systemd as
# PID 1 in pure cgroup v2, sshd) for qemu's software emulation; /dev/kvm here cannot run a stock
# kernel (see docs in this folder's README). Built once from this machine's own apt mirror (no image
# download) into a cache keyed by this script's hash; prints the image's folder.
#
# qemu-system-x86 cannot be installed beside the machine's newer qemu-utils, so its .debs are
# downloaded and unpacked into the cache instead, with their runtime libraries installed by apt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${MELON_VM_CACHE:-/var/cache/melon-test-vm}
image=$cache/image-$(cksum <"$here/build.sh" | cut -d' ' -f1)
if [ -f "$image/ready" ]; then echo "$image"; exit 0; fi
mkdir -p "$cache"
exec 9>"$cache/.lock"; flock 9  # one build at a time
if [ -f "$image/ready" ]; then echo "$image"; exit 0; fi

export DEBIAN_FRONTEND=noninteractive
mirror=$(
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    awk '/^deb / && $2 !~ /security/ {print $2; exit} /^URIs:/ && $2 !~ /security/ {print $2; exit}'
)
[ -n "$mirror" ] || { echo "build: no Debian mirror in /etc/apt sources" >&2; exit 1; }

qemu=$cache/qemu
if [ ! -x "$qemu/usr/bin/qemu-system-x86_64" ]; then
    apt-get update -qq
    libs=$(apt-cache depends qemu-system-x86 qemu-system-common | awk '/Depends: (lib|zlib)/{print $2}' | sort -u)
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $libs seabios ipxe-qemu debootstrap e2fsprogs >/dev/null
    rm -rf "$qemu.tmp" && mkdir -p "$qemu.tmp/debs" "$qemu.tmp/fw"
    (cd "$qemu.tmp/debs" && apt-get download -qq qemu-system-x86 qemu-system-common qemu-system-data >/dev/null)
    for deb in "$qemu.tmp"/debs/*.deb; do dpkg -x "$deb" "$qemu.tmp"; done
    rm -rf "$qemu.tmp/debs" "$qemu"
    mv "$qemu.tmp" "$qemu"
    for f in "$qemu"/usr/share/qemu/* /usr/share/seabios/* /usr/lib/ipxe/qemu/*; do
        ln -sf "$(readlink -f "$f")" "$qemu/fw/$(basename "$f")"
    done
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap e2fsprogs >/dev/null; }

work=$(mktemp -d /var/tmp/melon-vm.XXXXXX)
trap 'rm -rf "$work"' EXIT
R=$work/rootfs
ssh-keygen -q -t ed25519 -N '' -C melon-test-vm -f "$work/id_vm"
echo "build: debootstrap bookworm with a kernel from $mirror (about 2 minutes)" >&2
debootstrap --variant=minbase \
    --include=systemd,systemd-sysv,openssh-server,python3,dbus,dbus-user-session,libpam-systemd,iproute2,udev,initramfs-tools,linux-image-amd64,procps,kmod,util-linux \
    bookworm "$R" "$mirror" >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
echo v2node >"$R/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 v2node\n' >"$R/etc/hosts"
echo '/dev/vda / ext4 rw,errors=remount-ro 0 1' >"$R/etc/fstab"
mkdir -p "$R/etc/systemd/network"
printf '[Match]\nName=en* eth*\n[Network]\nDHCP=yes\n' >"$R/etc/systemd/network/20-dhcp.network"
chroot "$R" systemctl enable -q systemd-networkd.service serial-getty@ttyS0.service
chroot "$R" systemctl mask -q systemd-networkd-wait-online.service
echo 'UseDNS no' >>"$R/etc/ssh/sshd_config"
install -d -m700 "$R/root/.ssh"
install -m600 "$work/id_vm.pub" "$R/root/.ssh/authorized_keys"
# The test users, with the uids the Docker nodes and this machine give them (tests/docker-sshd).
for pair in alice:2001 bob:2002; do
    name=${pair%%:*}; uid=${pair##*:}
    chroot "$R" groupadd -g "$uid" "$name"
    chroot "$R" useradd -m -u "$uid" -g "$name" -s /bin/bash "$name"
    install -d -m700 "$R/home/$name/.ssh"
    install -m600 "$work/id_vm.pub" "$R/home/$name/.ssh/authorized_keys"
    chroot "$R" chown -R "$name:$name" "/home/$name/.ssh"
done
rm -rf "$R"/var/cache/apt/archives/*.deb "$R"/var/lib/apt/lists/*
rm -rf "$image.tmp" && mkdir -p "$image.tmp"
cp "$R"/boot/vmlinuz-* "$image.tmp/vmlinuz"
cp "$R"/boot/initrd.img-* "$image.tmp/initrd.img"
mkfs.ext4 -q -F -L root -d "$R" "$image.tmp/root.img" 2G
install -m600 "$work/id_vm" "$image.tmp/id_vm"
cp "$work/id_vm.pub" "$image.tmp/id_vm.pub"
touch "$image.tmp/ready"
mv "$image.tmp" "$image"
echo "$image"
