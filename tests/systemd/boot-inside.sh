#!/usr/bin/env bash
# boot-inside.sh: run by boot.sh as PID 1 of fresh pid, mount, cgroup and
# network namespaces. Lays out a private world (tmpfs over /run, /tmp,
# /var/tmp and /var/lib; the build, the sources and the test's user
# database bound in; loopback only, plus 192.0.2.1 on lo as a "remote"
# address that never leaves this namespace), installs the shipped units
# with a drop-in that points them at the build, and execs systemd on a
# target that starts nothing but sluice-agent.service and sluice-mcpd.socket.
set -euo pipefail
mount --make-rprivate /
ip link set lo up
ip addr add 192.0.2.1/32 dev lo
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -p /run/sluice-test/build /run/sluice-test/src
mount --bind "$SLUICE_BUILD" /run/sluice-test/build
mount --bind "$SLUICE_SRC" /run/sluice-test/src
# The host's /etc and kernel tunables, read-only from here: systemd as PID
# 1 would otherwise set up a machine id and presets in /etc on a host that
# looks freshly installed, and raise fs.file-max host-wide. (The hostname
# is this namespace's own: --uts.)
mount --bind /etc /etc
mount -o remount,bind,ro /etc
for f in passwd group shadow gshadow; do mount --bind "$SLUICE_STAGE/root/etc/$f" "/etc/$f"; done
mount --bind /proc/sys /proc/sys
mount -o remount,bind,ro /proc/sys
# systemd's boot-time tmpfiles pass would otherwise empty the real /tmp.
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /var/tmp
mount -t tmpfs -o mode=0755 tmpfs /var/lib
# Only cgroup2, rooted at this cgroup namespace: systemd builds its unit
# tree here, and nothing else in the mount table (a hybrid host's v1
# hierarchies and its own cgroup2 mount) is left for a daemon to find.
umount -R /sys/fs/cgroup
mount -t cgroup2 none /sys/fs/cgroup

src=/run/sluice-test/src
mkdir -p /run/tmpfiles.d /run/systemd/system/sluice-mcpd.service.d /run/systemd/system/sluice-mcpd.socket.d
cp "$src/systemd/sluice.tmpfiles.conf" /run/tmpfiles.d/sluice.conf
systemd-tmpfiles --create /run/tmpfiles.d/sluice.conf
cp /run/sluice-test/build/systemd/sluice-mcpd.service /run/sluice-test/build/systemd/sluice-mcpd.socket \
  /run/sluice-test/build/systemd/sluice-agent.service /run/systemd/system/
mkdir -p /run/systemd/system/sluice-agent.service.d
uid=$(id -u sluice-mcpd)
# The agent: its own instance (bpffs pins are the host's), the broker from
# the build, the tenant's "LLM" on loopback, sluice-mcpd's uid as a peer.
cat >/run/sluice-test/agent.toml <<CFG
instance = "$SLUICE_INSTANCE"
runtime_dir = "/run/sluice"
broker_path = "/run/sluice-test/build/daemon/sluice-broker"
allow_loopback = true
allowed_peer_uids = [$uid]
[network]
internal_networks = ["10.0.0.0/8"]
CFG
cat >/run/sluice-test/endpoints.json <<'JSON'
{"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["http://127.0.0.1:11434"]}}
JSON
# sluice-mcpd: the shipped configuration with its [agent] section filled in.
cat "$src/systemd/mcpd.toml" - >/run/sluice-test/mcpd.toml <<'CFG'
[agent]
socket = "/run/sluice/agent.sock"
endpoints_file = "/run/sluice-test/endpoints.json"
timeout_ms = 5000
allow_loopback = true
CFG
"/run/sluice-test/build/mcpd/data/sluice-demo-data" --out /run/sluice-test/bank.db --customers 50 --transactions 200 >/dev/null
# The test's only changes to the units: binaries from the build, those
# configurations, and no default dependencies (this namespace boots
# nothing else).
cat >/run/systemd/system/sluice-mcpd.service.d/test.conf <<'UNIT'
[Unit]
DefaultDependencies=no
[Service]
ExecStart=
ExecStart=/run/sluice-test/build/mcpd/server/sluice-mcpd --config /run/sluice-test/mcpd.toml
UNIT
cat >/run/systemd/system/sluice-agent.service.d/test.conf <<'UNIT'
[Unit]
DefaultDependencies=no
[Service]
ExecStart=
ExecStart=/run/sluice-test/build/daemon/sluice-agent --config /run/sluice-test/agent.toml
UNIT
cat >/run/systemd/system/sluice-mcpd.socket.d/test.conf <<'UNIT'
[Unit]
DefaultDependencies=no
UNIT
cat >/run/systemd/system/sluice-test.target <<'UNIT'
[Unit]
Description=Sluice systemd test
DefaultDependencies=no
Wants=sluice-mcpd.socket sluice-agent.service
UNIT
exec env container=sluice-test /lib/systemd/systemd --system --unit=sluice-test.target
