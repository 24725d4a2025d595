#!/usr/bin/env bash
# boot-inside.sh: run by boot.sh as PID 1 of fresh pid, mount, cgroup and
# network namespaces. Lays out a private world (tmpfs over /run, /tmp,
# /var/tmp and /var/lib; the build, the sources and the test's user
# database bound in; loopback only, plus 192.0.2.1 on lo as a "remote"
# address that never leaves this namespace), installs the shipped units
# with a drop-in that points them at the build, and execs systemd on a
# target that starts nothing but sluice-mcpd.socket.
set -euo pipefail
mount --make-rprivate /
ip link set lo up
ip addr add 192.0.2.1/32 dev lo
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sluice-test/build /run/sluice-test/src
mount --bind "$SLUICE_BUILD" /run/sluice-test/build
mount --bind "$SLUICE_SRC" /run/sluice-test/src
for f in passwd group shadow gshadow; do mount --bind "$SLUICE_STAGE/root/etc/$f" "/etc/$f"; done
# systemd's boot-time tmpfiles pass would otherwise empty the real /tmp.
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
mount -t tmpfs -o mode=0755 tmpfs /var/lib
# Rooted at this cgroup namespace: systemd builds its unit tree here.
mount -t cgroup2 none /sys/fs/cgroup

src=/run/sluice-test/src
mkdir -p /run/tmpfiles.d /run/systemd/system/sluice-mcpd.service.d /run/systemd/system/sluice-mcpd.socket.d
cp "$src/systemd/sluice.tmpfiles.conf" /run/tmpfiles.d/sluice.conf
systemd-tmpfiles --create /run/tmpfiles.d/sluice.conf
cp "$src/systemd/sluice-mcpd.service" "$src/systemd/sluice-mcpd.socket" /run/systemd/system/
cat >/run/systemd/system/sluice-mcpd.service.d/test.conf <<'UNIT'
# The test's only changes: the binary from the build, the shipped
# configuration from the sources, and no default dependencies (this
# namespace boots nothing else).
[Unit]
DefaultDependencies=no
[Service]
ExecStart=
ExecStart=/run/sluice-test/build/mcpd/server/sluice-mcpd --config /run/sluice-test/src/systemd/mcpd.toml
UNIT
cat >/run/systemd/system/sluice-mcpd.socket.d/test.conf <<'UNIT'
[Unit]
DefaultDependencies=no
UNIT
cat >/run/systemd/system/sluice-test.target <<'UNIT'
[Unit]
Description=Sluice systemd test
DefaultDependencies=no
Wants=sluice-mcpd.socket
UNIT
exec env container=sluice-test /lib/systemd/systemd --system --unit=sluice-test.target
