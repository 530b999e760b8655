#!/usr/bin/env bash
# Installs what berth's tests, demo and benchmarks need on a fresh Debian
# machine. Idempotent and quick when everything is already there.
set -euo pipefail

need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check nft nftables
check iptables iptables
check ip iproute2
check ping iputils-ping
check dig dnsutils
check curl curl
check nc netcat-openbsd
check sysctl procps
check etcd etcd-server
check dnsperf dnsperf
# The VM lane (make test-vm): QEMU, and xz to unpack the kernel image.
check qemu-system-x86_64 qemu-system-x86
check xz xz-utils
# The DNS benchmark compares with Podman's server and dnsmasq: only for
# `make bench` (BENCH=1), not needed by the tests.
if [[ ${BENCH:-} == 1 ]]; then
	[[ -x /usr/lib/podman/aardvark-dns ]] || need+=(aardvark-dns)
	check dnsmasq dnsmasq-base
	# The overlay's throughput against the underlay (test/overlay bench).
	check iperf3 iperf3
fi

if ((${#need[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "install-deps: missing ${need[*]}; run as root" >&2
		exit 1
	fi
	echo "install-deps: installing ${need[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq -o DPkg::Lock::Timeout=600
	apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${need[@]}" >/dev/null
fi

# staticcheck comes from the Go module proxy.
gobin=$(go env GOPATH)/bin
if [[ ! -x $gobin/staticcheck ]]; then
	echo "install-deps: installing staticcheck"
	go install honnef.co/go/tools/cmd/staticcheck@v0.8.2
fi
