#!/usr/bin/env bash
# The VM lane: runs the tests that need kernel features this host may lack
# (802.1q VLANs) inside Debian's stock kernel under QEMU. The VM has no
# network device at all: the tests make their own namespaces in it, as on
# the host. `make test-vm`; `make test` calls it.
#
# Nothing is installed on the host: the kernel, busybox and kmod packages
# are downloaded (apt-get download) and unpacked (dpkg-deb -x) into a cache
# directory; the host's /boot is never touched.
#
#   BERTH_VM_CACHE  cache directory (default /var/cache/berth-vm)
#   BERTH_VM_RUN    go test -run pattern (default ^TestVLAN)
#   BERTH_VM_PKGS   test packages to run (default ./test/macvlan ./hack/demo)
#   BERTH_VM_KVM=1  use KVM (nested KVM fails on the development VMs: TCG)
set -euo pipefail
cd "$(dirname "$0")/../.."
root_dir=$PWD
cache=${BERTH_VM_CACHE:-/var/cache/berth-vm}
run=${BERTH_VM_RUN:-^TestVLAN}
pkgs=${BERTH_VM_PKGS:-./test/macvlan ./hack/demo}
start=$(date +%s.%N)

log() { echo "test-vm: $*" >&2; }
die() { log "$*"; exit 1; }

command -v qemu-system-x86_64 >/dev/null || die "qemu-system-x86_64 missing: run hack/install-deps.sh (package qemu-system-x86)"

# --- packages: the kernel linux-image-amd64 depends on, busybox, kmod ---
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-[0-9]/{print $2; exit}')
[[ -n $kpkg ]] || die "cannot tell which kernel linux-image-amd64 depends on (apt-get update?)"
kver=${kpkg#linux-image-}
debs=$cache/deb
mkdir -p "$debs"
# The cache is shared by every checkout on the machine: one preparer at a
# time (released before the boot, so VMs run side by side).
exec 9>"$cache/lock"
flock 9
fetch() {
	compgen -G "$debs/${1}_*.deb" >/dev/null && return
	log "downloading $1"
	# apt-get download writes into the current directory as the _apt user
	# when it can: a scratch directory it may write to, then moved.
	local tmp
	tmp=$(mktemp -d)
	chmod 0777 "$tmp"
	(cd "$tmp" && apt-get download -q -o DPkg::Lock::Timeout=600 "$1") || { rm -rf "$tmp"; die "apt-get download $1 failed"; }
	mv "$tmp"/*.deb "$debs/"
	rm -rf "$tmp"
}
for p in "$kpkg" busybox kmod; do fetch "$p"; done

pkgroot=$cache/root-$kver
if [[ ! -e $pkgroot/.done ]]; then
	log "unpacking into $pkgroot"
	rm -rf "$pkgroot"
	mkdir -p "$pkgroot"
	for p in "$kpkg" busybox kmod; do
		dpkg-deb -x "$(compgen -G "$debs/${p}_*.deb" | head -1)" "$pkgroot"
	done
	touch "$pkgroot/.done"
fi

# --- vmlinux: the uncompressed kernel, booted through its PVH entry ---
# (no real-mode setup and decompression under TCG: 3-5 s per boot saved).
# The bzImage's payload is found by its compression magic and inflated
# until an ELF comes out.
vmlinux=$cache/vmlinux-$kver
if [[ ! -s $vmlinux ]]; then
	log "extracting vmlinux"
	bz=$pkgroot/boot/vmlinuz-$kver
	tmp=$vmlinux.tmp
	found=
	for magic in 'fd377a585a00:xz -dc --single-stream' '1f8b08:gzip -dc' '28b52ffd:zstd -dc'; do
		hex=${magic%%:*} cmd=${magic#*:}
		pat=$(sed 's/../\\x&/g' <<<"$hex")
		for off in $(LC_ALL=C grep -obUaP "$pat" "$bz" | cut -d: -f1); do
			tail -c +$((off + 1)) "$bz" | $cmd >"$tmp" 2>/dev/null || true
			if [[ $(head -c 4 "$tmp" | od -An -tx1 | tr -d ' \n') == 7f454c46 ]]; then
				found=1
				break 2
			fi
		done
	done
	[[ -n $found ]] || die "no ELF kernel found inside $bz"
	mv "$tmp" "$vmlinux"
fi

# --- base initramfs (cached): busybox, iproute2's ip, kmod's modprobe,
# the network modules with their depmod index ---
base=$cache/base-$kver.cpio
if [[ ! -s $base ]]; then
	log "building the base initramfs"
	w=$(mktemp -d)
	trap 'rm -rf "$w"' EXIT
	mkdir -p "$w"/{bin,sbin,dev,proc,sys,tmp,run,etc,lib/modules/"$kver"/kernel/drivers}
	mkdir -p "$w/var" && ln -s /run "$w/var/run"
	# copy FILE with the libraries ldd lists, at their paths.
	withlibs() {
		local f=$1 dst=$2
		cp -L "$f" "$w$dst"
		for lib in $(ldd "$f" | grep -o '/[^ ]*'); do
			mkdir -p "$w$(dirname "$lib")"
			cp -Ln "$lib" "$w$lib"
		done
	}
	withlibs "$pkgroot/bin/busybox" /bin/busybox
	# Plain busybox (not busybox-static, which ignores PATH for its own
	# applets and whose ip lacks netns and veth): its applets, but ip and
	# the module tools come from iproute2 and kmod.
	for a in $("$pkgroot/bin/busybox" --list); do
		case $a in ip | modprobe | insmod | rmmod | lsmod | depmod | modinfo | busybox) continue ;; esac
		ln -sf busybox "$w/bin/$a"
	done
	withlibs "$(command -v ip)" /sbin/ip
	ln -sf /sbin/ip "$w/bin/ip"
	withlibs "$pkgroot/bin/kmod" /bin/kmod
	ln -sf /bin/kmod "$w/sbin/modprobe"
	m=$pkgroot/lib/modules/$kver
	cp -a "$m/kernel/net" "$w/lib/modules/$kver/kernel/"
	cp -a "$m/kernel/drivers/net" "$w/lib/modules/$kver/kernel/drivers/"
	cp "$m"/modules.order "$m"/modules.builtin "$m"/modules.builtin.modinfo "$w/lib/modules/$kver/"
	# kmod acts by the name it is called under; the package's own
	# symlinks point at /bin/kmod, which the host may not have.
	mkdir -p "$cache/tools"
	ln -sf "$pkgroot/bin/kmod" "$cache/tools/depmod"
	"$cache/tools/depmod" -b "$w" "$kver"
	(cd "$w" && find . -mindepth 1 | LC_ALL=C sort | "$pkgroot/bin/busybox" cpio -o -H newc 2>/dev/null) >"$base.tmp"
	mv "$base.tmp" "$base"
	rm -rf "$w"
	trap - EXIT
fi

flock -u 9

# --- this run's part: the static berth binaries, the crash-point builds,
# the test binaries and conf-examples, appended as a second archive ---
w=$(mktemp -d)
out=$(mktemp -d)
trap 'rm -rf "$w" "$out"' EXIT
mkdir -p "$w/berth/bin" "$w/berth/crashbin" "$w/berth/tests"
export CGO_ENABLED=0
go build -trimpath -ldflags='-s -w' -o "$w/berth/bin/" ./plugins/... ./cmd/...
go build -trimpath -ldflags='-s -w' -tags crashpoint -o "$w/berth/crashbin/" ./plugins/macvlan ./plugins/host-local
for p in $pkgs; do
	go test -c -o "$w/berth/tests/$(basename "$p").test" "$p"
done
cp -r conf-examples "$w/berth/"
install -m 0755 hack/vm/init "$w/init"
echo "$run" >"$w/berth/run"
initrd=$out/initrd.cpio
(cd "$w" && find . -mindepth 1 | LC_ALL=C sort | "$pkgroot/bin/busybox" cpio -o -H newc 2>/dev/null) >"$out/run.cpio"
cat "$base" "$out/run.cpio" >"$initrd"
built=$(date +%s.%N)

accel=(-accel tcg)
[[ ${BERTH_VM_KVM:-} == 1 ]] && accel=(-accel kvm -cpu host)
log "booting $kpkg ($(du -h "$initrd" | cut -f1) initramfs), running $pkgs -run '$run'"
console=$out/console.log
set +e
timeout 600 qemu-system-x86_64 "${accel[@]}" -smp 2 -m 1024 -nic none -nographic -no-reboot \
	-kernel "$vmlinux" -initrd "$initrd" \
	-append "console=ttyS0 cryptomgr.notests quiet panic=-1 loglevel=3" </dev/null | tee "$console"
qrc=${PIPESTATUS[0]}
set -e
end=$(date +%s.%N)
rc=$(grep -ao 'BERTH-VM-EXIT [0-9]*' "$console" | tail -1 | awk '{print $2}')
awk -v s="$start" -v b="$built" -v e="$end" 'BEGIN { printf "test-vm: build %.1fs, VM %.1fs, total %.1fs\n", b - s, e - b, e - s }' >&2
if [[ -z $rc ]]; then
	die "no exit marker on the console (qemu exit $qrc)"
fi
if grep -aq -- '--- SKIP' "$console"; then
	die "a test skipped inside the VM: there the kernel has what it needs, so skipping is a failure"
fi
if ! grep -aq -- '--- PASS' "$console" && [[ $rc == 0 ]]; then
	die "no test ran inside the VM (pattern '$run')"
fi
exit "$rc"
