#!/usr/bin/env bash
# Build the root filesystem tree of one swaprace test box with debootstrap.
#
#   build-rootfs.sh KERNEL ROOTFS_DIR MIRROR
#
# KERNEL names vm-setup/packages/KERNEL.txt, whose "# suite:" line picks the Debian userland and whose optional
# "# kernel-suite:" line picks the suite the kernel packages come from (apt -t). The tree gets the packages of
# packages/common.txt and packages/KERNEL.txt (no recommends, no docs), the Python packages of
# requirements-guest.txt, and /etc/swaprace-testbox. Called by swaprace.vm.image inside `unshare --mount`, so
# the /proc, /sys and /dev mounts below vanish with this process, even when it is killed: the host is left as
# it was. Needs root, debootstrap and network access to MIRROR and PyPI.
set -euo pipefail

kernel=$1
rootfs=$2
mirror=$3
here=$(cd "$(dirname "$0")" && pwd)
list=$here/packages/$kernel.txt
[ -f "$list" ] || { echo "build-rootfs: no package list $list" >&2; exit 2; }

packages() { grep -v -e '^#' -e '^[[:space:]]*$' "$1" | tr '\n' ' '; }
suite=$(sed -n 's/^# suite: *//p' "$list")
kernel_suite=$(sed -n 's/^# kernel-suite: *//p' "$list")
[ -n "$suite" ] || { echo "build-rootfs: $list has no '# suite:' line" >&2; exit 2; }

step() { printf 'build-rootfs[%s]: %s\n' "$kernel" "$*" >&2; }

rm -rf "$rootfs"
mkdir -p "$rootfs"

step "debootstrap $suite from $mirror"
debootstrap --variant=minbase --components=main "$suite" "$rootfs" "$mirror" >&2

# No documentation, manual pages or translations: they are most of a minimal system's size.
cat > "$rootfs/etc/dpkg/dpkg.cfg.d/01-swaprace-nodoc" <<'EOF'
path-exclude=/usr/share/doc/*
path-include=/usr/share/doc/*/copyright
path-exclude=/usr/share/man/*
path-exclude=/usr/share/info/*
path-exclude=/usr/share/locale/*
path-include=/usr/share/locale/locale.alias
EOF
# Package scripts must not start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d"
chmod 755 "$rootfs/usr/sbin/policy-rc.d"

{
    echo "deb $mirror $suite main"
    [ -z "$kernel_suite" ] || echo "deb $mirror $kernel_suite main"
} > "$rootfs/etc/apt/sources.list"
# The host's mirror may be a dated snapshot: do not reject its Release files as expired.
echo 'Acquire::Check-Valid-Until "false";' > "$rootfs/etc/apt/apt.conf.d/99swaprace-snapshot"
echo 'APT::Install-Recommends "false";' > "$rootfs/etc/apt/apt.conf.d/99swaprace-norecommends"

mount -t proc proc "$rootfs/proc"
mount -t sysfs sysfs "$rootfs/sys"
mount --bind /dev "$rootfs/dev"
cp /etc/resolv.conf "$rootfs/etc/resolv.conf"

# env -i: nothing of the host's environment (proxies aside) leaks into the chroot, e.g. its pip settings.
in_root() { chroot "$rootfs" env -i DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 HOME=/root \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"; }

step "apt-get install (common)"
in_root apt-get update -q >&2
# shellcheck disable=SC2046
in_root apt-get install -y -q $(packages "$here/packages/common.txt") >&2
step "apt-get install (kernel${kernel_suite:+ from $kernel_suite})"
# shellcheck disable=SC2046
in_root apt-get install -y -q ${kernel_suite:+-t "$kernel_suite"} $(packages "$list") >&2

step "pip install (requirements-guest.txt)"
cp "$here/requirements-guest.txt" "$rootfs/tmp/requirements-guest.txt"
# Use the host's CA bundle for this one step: the host may reach PyPI through a TLS-inspecting proxy.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/tmp/host-ca.crt"
in_root env PIP_CONFIG_FILE=/dev/null python3 -m pip install -q --no-cache-dir --break-system-packages \
    --root-user-action=ignore --cert /tmp/host-ca.crt -r /tmp/requirements-guest.txt >&2
rm -f "$rootfs/tmp/requirements-guest.txt" "$rootfs/tmp/host-ca.crt"

release=$(ls "$rootfs/lib/modules" | head -n 1)
# (the build link is absolute: resolve it inside the chroot)
[ -n "$release" ] && in_root test -e "/lib/modules/$release/build/Makefile" || {
    echo "build-rootfs: no kernel with headers was installed" >&2; exit 1; }
printf 'suite=%s\nkernel=%s\nrelease=%s\n' "$suite" "$kernel" "$release" > "$rootfs/etc/swaprace-testbox"
echo swaprace-testbox > "$rootfs/etc/hostname"
: > "$rootfs/etc/resolv.conf"

step "clean up"
in_root apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log "$rootfs"/root/.cache
umount "$rootfs/dev" "$rootfs/sys" "$rootfs/proc"
step "done: kernel $release"
