#!/usr/bin/env bash
# Installs what the real-engine lane (test/e2e, `make test-e2e`) needs on a
# fresh Debian machine: Debian's podman 4.3 and containerd 1.6 with runc
# (crun fails on hybrid cgroups), busybox-static for the container rootfs,
# and crictl from the Go module proxy. Idempotent.
set -euo pipefail

need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check podman podman
check runc runc
check containerd containerd
check nsenter util-linux
[[ -x /bin/busybox ]] && file -L /bin/busybox 2>/dev/null | grep -q 'statically linked' || need+=(busybox-static)
command -v file >/dev/null 2>&1 || need+=(file)

if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "e2e deps: missing ${need[*]}; run as root" >&2
		exit 1
	fi
	echo "e2e deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq -o DPkg::Lock::Timeout=600
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi
