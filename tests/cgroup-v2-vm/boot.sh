#!/usr/bin/env bash
# Boot the cgroup v2 test node: boot.sh IMAGE_DIR PORT RUN_DIR. Software emulation (TCG), 2 CPUs,
# 512 MiB, a 128 MiB code cache (qemu's RSS then ~0.65 GB), the image read-only (-snapshot: every
# boot starts from the built image), sshd forwarded to 127.0.0.1:PORT. Returns once qemu runs;
# RUN_DIR gets qemu.pid and console.log. restrict=on: the guest reaches nothing but its forwarded port.
set -euo pipefail
image=$1 port=$2 run=$3
qemu=$(dirname "$image")/qemu
mkdir -p "$run"
exec "$qemu/usr/bin/qemu-system-x86_64" -L "$qemu/fw" \
    -accel tcg,thread=multi,tb-size=128 -cpu max -smp 2 -m 512 \
    -kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
    -append "root=/dev/vda rw console=ttyS0 systemd.unified_cgroup_hierarchy=1" \
    -drive "file=$image/root.img,format=raw,if=virtio,cache=unsafe" -snapshot \
    -netdev "user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:$port-:22" -device virtio-net-pci,netdev=n0 \
    -display none -serial "file:$run/console.log" -monitor none -pidfile "$run/qemu.pid" -daemonize
