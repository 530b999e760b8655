package e2e

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

// EnvE2E gates the lane: the engines are Debian packages `go test ./...`
// cannot assume, so without it every test skips saying how to run them;
// `make test-e2e` sets it after installing them (hack/e2e/deps.sh) and
// fails if anything skips.
const EnvE2E = "BERTH_E2E"

func TestMain(m *testing.M) {
	if os.Getenv(EnvE2E) != "1" {
		// Nothing to build for tests that will skip.
		os.Exit(m.Run())
	}
	// conmon and containerd's shims daemonize; orphaned, they become this
	// process's children rather than init's (which, on some CI machines,
	// never reaps them), and each engine's cleanup reaps them.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: PR_SET_CHILD_SUBREAPER:", err)
	}
	nstest.Main(m)
}

// reapOrphans collects the exit status of every child left exited: run
// last in an engine's cleanup, when the harness has waited for its own.
func reapOrphans() {
	for {
		var ws unix.WaitStatus
		if pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil); pid <= 0 || err != nil {
			return
		}
	}
}

func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv(EnvE2E) != "1" {
		t.Skipf("real-engine lane: run `make test-e2e` (installs podman, runc, containerd, busybox-static; sets %s=1)", EnvE2E)
	}
	nstest.RequireRoot(t)
}

// Engine is a private world for a container engine: a host network
// namespace (nstest) and a mount namespace held by a sleeping process, in
// which the engine's every command runs (nsenter). The mount namespace
// gives the engine what `ip netns exec` would not: /sys of the host
// namespace with the cgroup hierarchies still mounted (runc needs them), and
// private /run/netns, /run/cni, /var/lib/cni, /run/containers (Podman's
// runroot) and /etc/resolv.conf, so neither the engine's namespaces nor
// berth's state are the machine's.
type Engine struct {
	T    testing.TB
	Host *nstest.NS
	Dir  string
	mnt  string // /proc/PID/ns/mnt of the holder
	env  []string
	// daemons are the engine's own long-running processes (containerd),
	// which HostProcs does not count as left behind.
	daemons []int
}

// Upstream is the address the engine's resolv.conf names: an address of the
// host namespace itself (on its lo; this kernel has no dummy links), where
// the fake upstream answers (startUpstream), so DNS forwarding never leaves
// the test's namespaces.
const Upstream = "198.18.0.53"

// holderScript prepares the mount namespace. /sys is remounted while in the
// host network namespace (sysfs shows the links of the namespace that
// mounts it); the cgroup tree is moved back on top of it.
const holderScript = `set -e
D=$1
mount --make-rslave /
mkdir -p "$D/cg" /run/cni /var/lib/cni /run/containerd /run/containers
mount --rbind /sys/fs/cgroup "$D/cg"
mount -t sysfs sysfs /sys
mount --move "$D/cg" /sys/fs/cgroup
for d in /run/netns /run/cni /var/lib/cni /run/containerd /run/containers; do mount -t tmpfs tmpfs "$d"; done
mount --bind "$D/resolv.conf" /etc/resolv.conf
echo ready
exec sleep infinity
`

// NewEngine makes the namespaces; everything is removed on cleanup (the
// engine's own cleanups, registered later, run first).
func NewEngine(t testing.TB) *Engine {
	t.Helper()
	e := &Engine{T: t, Host: nstest.NewNS(t, "host"), Dir: t.TempDir()}
	t.Cleanup(reapOrphans)
	e.Host.MustExec(t, "ip", "addr", "add", Upstream+"/32", "dev", "lo")
	startUpstream(t, e.Host)
	if err := os.WriteFile(filepath.Join(e.Dir, "resolv.conf"), []byte("nameserver "+Upstream+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("nsenter", "--net="+e.Host.Path, "unshare", "--mount", "--propagation", "unchanged",
		"sh", "-c", holderScript, "holder", e.Dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start the mount namespace holder: %v", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		t.Fatalf("mount namespace holder: %q, %v", line, err)
	}
	// nsenter and unshare exec without forking: the PID is the holder's.
	e.mnt = fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid)
	return e
}

// Command runs args in the engine's mount and network namespaces.
func (e *Engine) Command(args ...string) *exec.Cmd {
	full := append([]string{"--mount=" + e.mnt, "--net=" + e.Host.Path, "env"}, e.env...)
	return exec.Command("nsenter", append(full, args...)...)
}

// Exec runs args in the engine's namespaces and returns their output.
func (e *Engine) Exec(args ...string) (string, error) {
	out, err := e.Command(args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Output is Exec returning stdout only (crictl warns on stderr).
func (e *Engine) Output(args ...string) string {
	e.T.Helper()
	cmd := e.Command(args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		e.T.Fatalf("%s: %v: %s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// MustExec is Exec failing the test on error.
func (e *Engine) MustExec(args ...string) string {
	e.T.Helper()
	out, err := e.Exec(args...)
	if err != nil {
		e.T.Fatal(err)
	}
	return out
}

// GetPage fetches url from inside ns and fails the test unless it serves
// the rootfs's page. It retries for a few seconds: the engine reports the
// container started before httpd in it listens (the network is ready at
// once; the server need not be).
func GetPage(t testing.TB, ns *nstest.NS, url string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := ns.Exec("curl", "-sS", "-m3", url)
		if err == nil && out == "hello from berth\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("GET %s from %s: %q, %v", url, ns.Name, out, err)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Rootfs builds a container root from busybox-static (no image can be
// pulled here): the binary, its applets as links, and a page for httpd.
func Rootfs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "www", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"sh", "sleep", "ping", "nc", "nslookup", "ip", "cat", "echo", "true", "httpd", "hostname"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "www", "index.html"), []byte("hello from berth\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// assertNothingLeft checks that no trace of the container (or pod) IDs is
// left in e: links in the host namespace besides lo and those in keep (a
// runtime's bridge outlives its containers), nft elements, files naming
// them in berth's and host-local's state, address reservations, container
// namespaces, and processes in the host namespace (sidecars, conmon, shims).
func assertNothingLeft(t testing.TB, e *Engine, ids []string, keep ...string) {
	t.Helper()
	for _, name := range e.hostLinks() {
		if name == "lo" || slices.Contains(keep, name) {
			continue
		}
		t.Errorf("link left in the host namespace: %s", name)
	}
	rules := e.Host.MustExec(t, "nft", "list", "ruleset")
	state := e.MustExec("sh", "-c", "grep -rl . /run/cni /var/lib/cni/networks 2>/dev/null; ls /run/netns; true")
	for _, id := range ids {
		if strings.Contains(rules, id) {
			t.Errorf("nft rules left for %s:\n%s", id[:12], rules)
		}
		if out := e.MustExec("sh", "-c", "grep -rl "+id+" /run/cni /var/lib/cni 2>/dev/null; true"); strings.TrimSpace(out) != "" {
			t.Errorf("state left for %s: %s", id[:12], out)
		}
	}
	for _, l := range strings.Split(state, "\n") {
		// host-local's reservations are files named by the address.
		if net.ParseIP(filepath.Base(l)) != nil {
			t.Errorf("address reservation left: %s", l)
		}
		if strings.HasPrefix(l, "cni-") {
			t.Errorf("container namespace left: /run/netns/%s", l)
		}
	}
	// dnsname's sidecar outlives the last name by under a second (it
	// stays for the next container, see pkg/nameserver/sidecar/daemon):
	// processes get a bounded wait, nothing else does.
	deadline := time.Now().Add(3 * time.Second)
	for procs := e.HostProcs(); len(procs) > 0; procs = e.HostProcs() {
		if time.Now().After(deadline) {
			t.Errorf("processes left in the host namespace 3 s after: %q", procs)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hostLinks lists the names of the links in the engine's host namespace.
func (e *Engine) hostLinks() []string {
	e.T.Helper()
	var names []string
	for _, l := range strings.Split(strings.TrimSpace(e.Host.MustExec(e.T, "ip", "-o", "link", "show")), "\n") {
		name := strings.SplitN(strings.TrimSuffix(strings.Fields(l)[1], ":"), "@", 2)[0]
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// HostProcs lists the processes whose network namespace is the host
// namespace, but the holder: daemons an engine or a plugin left.
func (e *Engine) HostProcs() []string {
	e.T.Helper()
	host, err := os.Stat(e.Host.Path)
	if err != nil {
		e.T.Fatal(err)
	}
	hostIno := host.Sys().(*syscall.Stat_t).Ino
	holder := strings.TrimSuffix(strings.TrimPrefix(e.mnt, "/proc/"), "/ns/mnt")
	var left []string
	pids, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range pids {
		st, err := os.Stat(p + "/ns/net")
		if err != nil || st.Sys().(*syscall.Stat_t).Ino != hostIno || filepath.Base(p) == holder || e.isDaemon(p) {
			continue
		}
		cmdline, _ := os.ReadFile(p + "/cmdline")
		left = append(left, filepath.Base(p)+" "+strings.ReplaceAll(string(cmdline), "\x00", " "))
	}
	return left
}

func (e *Engine) isDaemon(proc string) bool {
	for _, pid := range e.daemons {
		if proc == fmt.Sprintf("/proc/%d", pid) {
			return true
		}
	}
	return false
}
