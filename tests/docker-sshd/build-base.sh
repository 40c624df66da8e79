#!/usr/bin/env bash
# Build the local Debian base image for the test nodes: no registry here, so debootstrap a
# minimal bookworm into a folder and `docker import` it. The mirror comes from this machine's
# own apt sources, never a hard-coded host. The Dockerfile also builds FROM a stock
# debian:bookworm where a registry is reachable: pass BASE=debian:bookworm to `cluster build`.
set -euo pipefail
image=${1:-melon-debian-base:bookworm-mpi}
if docker image inspect "$image" >/dev/null 2>&1; then
    echo "base image $image exists"
    exit 0
fi
command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }

mirror=$(
    { cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true; } |
    awk '/^deb / && $2 !~ /security/ {print $2; exit} /^URIs:/ && $2 !~ /security/ {print $2; exit}'
)
[ -n "$mirror" ] || { echo "build-base: no Debian mirror found in /etc/apt sources" >&2; exit 1; }
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")

root=$(mktemp -d /var/tmp/melon-rootfs.XXXXXX)
trap 'umount "$root/proc" 2>/dev/null || true; rm -rf "$root"' EXIT
# Everything the node needs is installed here, so the Dockerfile's apt step finds it installed
# and needs no network.
packages=openssh-server,python3,systemd,systemd-sysv,dbus,libpam-systemd,procps,iproute2,sudo,util-linux,ca-certificates
# Open MPI and MPICH (with a C compiler for their mpicc) for the jobs that span nodes: installed by
# apt in the new root, as debootstrap's own --include cannot order their configuration.
mpi="openmpi-bin libopenmpi-dev mpich libmpich-dev gcc libc6-dev"
echo "debootstrap $suite from $mirror into $root"
debootstrap --variant=minbase --include="$packages" "$suite" "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -20 "$root.log" >&2; exit 1; }
mount -t proc proc "$root/proc"
# shellcheck disable=SC2086
chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $mpi \
    >"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }
umount "$root/proc"
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "built $image"
