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
dpkg -s busybox-static >/dev/null 2>&1 || need+=(busybox-static)

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

# crictl from the Go module proxy (the proxy serves v1.34.0 and v1.37.0 of
# cri-tools; v1.34.0 talks CRI v1, which containerd 1.6 serves). Static, as
# berth's binaries. About 3 minutes on 2 cores, once.
gobin=$(go env GOPATH)/bin
if [[ ! -x $gobin/crictl ]] && ! command -v crictl >/dev/null 2>&1; then
	echo "e2e deps: installing crictl"
	CGO_ENABLED=0 GOFLAGS=-mod=mod go install sigs.k8s.io/cri-tools/cmd/crictl@v1.34.0
fi
