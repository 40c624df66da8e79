#!/bin/sh
# Boot systemd as PID 1 when the container can run it (MELON_NODE_INIT=systemd), else run sshd alone.
set -e
chmod 0600 /etc/ssh/melon/ssh_host_ed25519_key 2>/dev/null || true
if [ "${MELON_NODE_INIT:-systemd}" = systemd ] && [ -x /lib/systemd/systemd ]; then
    exec /lib/systemd/systemd
fi
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e
