package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
)

// Podman is Debian's podman 4.3 on the CNI backend with berth's binaries
// as its only plugin directory, in an Engine with private storage.
type Podman struct {
	*Engine
	Rootfs string
}

// podmanConfig is the containers.conf the lane uses (README: "Using berth
// with Podman"). runc, not crun (crun fails on this host's hybrid
// cgroups); no default ulimits (runc cannot raise rlimits here).
//
// No static_dir: the bolt database stays in graphroot/libpod, its default.
// When a container exits, conmon runs `podman --root … container cleanup`
// (the exit command: network teardown, state "exited", --rm), and with
// --root on its command line podman derives the static dir from the root
// and ignores containers.conf's static_dir: a static_dir elsewhere gave
// that process an empty database ("no such container", exit 125), so no
// container was ever cleaned up on exit, and an attached `podman run`
// waited out its 20 s conmon timeout for the state to become "exited".
const podmanConfig = `[containers]
default_ulimits = []

[network]
network_backend = "cni"
cni_plugin_dirs = [%q]
network_config_dir = %q

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
# Locks in tmp_dir, not the machine-wide /dev/shm/libpod_lock shared with
# every other podman (a fresh tmp_dir makes podman free all its locks).
lock_type = "file"
events_logfile_path = %q
tmp_dir = %q
volume_path = %q
`

// storageConfig: the runroot is Podman's default path, on the engine's own
// tmpfs (holderScript), not under the test's directory. conmon's exit
// command (`podman --runroot … container cleanup`) refuses a runroot
// longer than 50 characters ("the specified runroot is longer than 50
// characters", exit 125), and t.TempDir's path grows with the test's name:
// "/tmp/BenchmarkPodmanRunRmempty1234567890/001/runroot" is 52.
const storageConfig = `[storage]
driver = "vfs"
runroot = "/run/containers/storage"
graphroot = %q
`

// NewPodman makes an Engine configured for podman with the plugins of
// pluginDir (berth's, or the reference's for comparison). Containers and
// networks left by a failed test are removed on cleanup.
func NewPodman(t testing.TB, pluginDir string) *Podman {
	t.Helper()
	e := NewEngine(t)
	d := func(name string) string { return filepath.Join(e.Dir, name) }
	files := map[string]string{
		"containers.conf": fmt.Sprintf(podmanConfig, pluginDir, d("net.d"), d("events.log"), d("tmp"), d("volumes")),
		"storage.conf":    fmt.Sprintf(storageConfig, d("root")),
	}
	for name, content := range files {
		if err := os.WriteFile(d(name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(d("net.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	e.env = []string{"CONTAINERS_CONF=" + d("containers.conf"), "CONTAINERS_STORAGE_CONF=" + d("storage.conf")}
	p := &Podman{Engine: e, Rootfs: Rootfs(t)}
	t.Cleanup(func() {
		if out, err := p.Exec("podman", "rm", "-fa", "-t0"); err != nil {
			t.Errorf("cleanup: %v: %s", err, out)
		}
		if out, err := p.Exec("podman", "network", "prune", "-f"); err != nil {
			t.Errorf("cleanup: %v: %s", err, out)
		}
	})
	return p
}

// Podman runs a podman command and returns its trimmed output.
func (p *Podman) Podman(args ...string) string {
	p.T.Helper()
	return strings.TrimSpace(p.MustExec(append([]string{"podman"}, args...)...))
}

// Run starts a detached container from the busybox rootfs: opts are podman
// run options, cmd the container's command.
func (p *Podman) Run(name string, opts []string, cmd ...string) string {
	p.T.Helper()
	args := append([]string{"run", "-d", "--name", name, "--ulimit", "host"}, opts...)
	args = append(append(args, "--rootfs", p.Rootfs), cmd...)
	return p.Podman(args...)
}

// IP is the container's address on network.
func (p *Podman) IP(ctr, network string) string {
	p.T.Helper()
	ip := p.Podman("inspect", "-f", "{{(index .NetworkSettings.Networks \""+network+"\").IPAddress}}", ctr)
	if ip == "" {
		p.T.Fatalf("%s has no address on %s", ctr, network)
	}
	return ip
}

// Ping pings addr (an IP or a name) once from inside ctr.
func (p *Podman) Ping(ctr, addr string) error {
	_, err := p.Exec("podman", "exec", ctr, "ping", "-c1", "-W1", addr)
	return err
}

// Conflist reads the conflist podman wrote for network.
func (p *Podman) Conflist(network string) map[string]any {
	p.T.Helper()
	b, err := os.ReadFile(filepath.Join(p.Dir, "net.d", network+".conflist"))
	if err != nil {
		p.T.Fatalf("podman did not write the conflist of %s: %v", network, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		p.T.Fatal(err)
	}
	return m
}

// WaitStatus waits up to 10 s for ctr's State.Status to become want and
// fails t with the last status seen otherwise.
func (p *Podman) WaitStatus(t testing.TB, ctr, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := p.Podman("inspect", "-f", "{{.State.Status}}", ctr)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: status %q after 10 s, want %q", ctr, got, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// AssertNothingLeft is assertNothingLeft on the podman engine.
func (p *Podman) AssertNothingLeft(ids []string, keep ...string) {
	p.T.Helper()
	assertNothingLeft(p.T, p.Engine, ids, keep...)
}

// TestPodman drives podman through Docker's user-defined network
// scenarios on one engine, in order (each step builds on the last).
func TestPodman(t *testing.T) {
	requireE2E(t)
	p := NewPodman(t, nstest.CNIPath(t))

	// Podman writes the conflists itself; isolate=true is Docker's
	// isolation between user-defined networks (firewall same-bridge).
	p.Podman("network", "create", "-o", "isolate=true", "web")
	p.Podman("network", "create", "-o", "isolate=true", "other")
	list := p.Conflist("web")
	var types []string
	for _, pl := range list["plugins"].([]any) {
		types = append(types, pl.(map[string]any)["type"].(string))
	}
	if got := strings.Join(types, ","); got != "bridge,portmap,firewall,tuning,dnsname" {
		t.Fatalf("podman wrote plugins %s", got)
	}

	var ids []string
	ids = append(ids, p.Run("a", []string{"--network", "web", "--network-alias", "www", "-p", "8080:80"}, "httpd", "-f", "-p", "80", "-h", "/www"))
	ids = append(ids, p.Run("b", []string{"--network", "web"}, "sleep", "1000"))
	ids = append(ids, p.Run("c", []string{"--network", "other"}, "sleep", "1000"))
	aIP := p.IP("a", "web")

	t.Run("ping by IP, name and alias", func(t *testing.T) {
		for _, addr := range []string{aIP, "a", "www", "a.dns.podman"} {
			if err := p.Ping("b", addr); err != nil {
				t.Errorf("b -> %s: %v", addr, err)
			}
		}
	})

	// dnsname's server on the gateway forwards other names to the host's
	// resolv.conf, here the fake upstream.
	t.Run("forwarding to the upstream", func(t *testing.T) {
		gw := p.Podman("network", "inspect", "-f", "{{(index .Subnets 0).Gateway}}", "web")
		out, err := p.Exec("podman", "exec", "b", "nslookup", "www.example.test", gw)
		if err != nil || !strings.Contains(out, UpstreamAnswer) {
			t.Errorf("www.example.test through %s: %v: %s", gw, err, out)
		}
	})

	t.Run("published port from the host", func(t *testing.T) {
		for _, url := range []string{"http://127.0.0.1:8080/", "http://" + Upstream + ":8080/"} {
			GetPage(t, p.Host, url)
		}
	})

	t.Run("published port from outside", func(t *testing.T) {
		client := nstest.NewNS(t, "client")
		nstest.Veth(t, p.Host, "ext0", "192.0.2.1/24", client, "eth0", "192.0.2.2/24")
		GetPage(t, client, "http://192.0.2.1:8080/")
	})

	t.Run("other network isolated", func(t *testing.T) {
		if err := p.Ping("c", aIP); err == nil {
			t.Errorf("c on other reached a on web (%s)", aIP)
		}
		if err := p.Ping("c", "a"); err == nil {
			t.Errorf("c on other resolved and reached a")
		}
		if err := p.Ping("b", p.IP("c", "other")); err == nil {
			t.Errorf("b on web reached c on other")
		}
	})

	// a publishes 8080, and podman hands a container's -p mappings to
	// every network it joins: connecting a to other publishes the port a
	// second time, from the same container (no conflict), and the port
	// keeps working through whichever network a stays on, as with Docker.
	t.Run("connect and disconnect", func(t *testing.T) {
		published := func(when string) {
			t.Helper()
			for _, url := range []string{"http://127.0.0.1:8080/", "http://" + Upstream + ":8080/"} {
				GetPage(t, p.Host, url)
			}
			if t.Failed() {
				t.Fatalf("published port of a %s", when)
			}
		}
		cIP := p.IP("c", "other")
		p.Podman("network", "connect", "other", "a")
		for _, addr := range []string{cIP, "c"} {
			if err := p.Ping("a", addr); err != nil {
				t.Errorf("a -> %s after connect: %v", addr, err)
			}
		}
		if err := p.Ping("c", "a"); err != nil {
			t.Errorf("c -> a after connect: %v", err)
		}
		published("on web and other")
		// a leaves the network that served the port, comes back, and
		// leaves the other one.
		p.Podman("network", "disconnect", "web", "a")
		published("on other only")
		p.Podman("network", "connect", "web", "a")
		published("back on web")
		p.Podman("network", "disconnect", "other", "a")
		published("on web only")
		if err := p.Ping("a", cIP); err == nil {
			t.Errorf("a still reaches c after disconnect")
		}
		if err := p.Ping("c", "a"); err == nil {
			t.Errorf("c still resolves and reaches a after disconnect")
		}
		if err := p.Ping("b", "a"); err != nil {
			t.Errorf("b -> a after a left other: %v", err)
		}
	})

	// A macvlan on a veth of the host namespace whose peer is a "LAN"
	// namespace: the container is reached from the LAN directly.
	t.Run("macvlan", func(t *testing.T) {
		lan := nstest.NewNS(t, "lan")
		nstest.Veth(t, p.Host, "lan0", "", lan, "eth0", "192.0.2.2/24")
		p.Podman("network", "create", "-d", "macvlan", "-o", "parent=lan0", "--subnet", "192.0.2.0/24", "--ip-range", "192.0.2.128/25", "lan")
		if got := p.Conflist("lan")["plugins"].([]any)[0].(map[string]any); got["type"] != "macvlan" || got["master"] != "lan0" {
			t.Fatalf("podman wrote %v", got)
		}
		ids = append(ids, p.Run("m", []string{"--network", "lan"}, "sleep", "1000"))
		mIP := p.IP("m", "lan")
		nstest.Ping(t, lan, mIP)
		if err := p.Ping("m", "192.0.2.2"); err != nil {
			t.Errorf("m -> the LAN: %v", err)
		}
		p.Podman("rm", "-f", "-t0", "m")
		p.Podman("network", "rm", "lan")
		nstest.NoPing(t, lan, mIP)
	})

	t.Run("rm -f and network rm leave nothing", func(t *testing.T) {
		p.Podman("rm", "-f", "-t0", "a", "b", "c")
		p.Podman("network", "rm", "web", "other")
		p.AssertNothingLeft(ids)
	})
}

// TestPodmanExitCommandCleansUp: when a container's command ends, conmon
// runs Podman's exit command (`podman container cleanup`), which tears the
// network down (DEL through the chain) and marks the container "exited",
// with no rm; with --rm it removes the container, and an attached `podman
// run --rm` returns the command's status once that is done. Twice that
// command failed here, unseen but for a 20 s wait of attached runs and
// containers left "stopped" on their network: it opened another database
// than the engine's (static_dir) and refused a runroot path longer than
// 50 characters (this test's long name made one). See podmanConfig and
// storageConfig.
func TestPodmanExitCommandCleansUp(t *testing.T) {
	requireE2E(t)
	p := NewPodman(t, nstest.CNIPath(t))
	p.Podman("network", "create", "web")
	bridge := p.Conflist("web")["plugins"].([]any)[0].(map[string]any)["bridge"].(string)

	t.Run("detached", func(t *testing.T) {
		id := p.Run("e", []string{"--network", "web"}, "true")
		p.WaitStatus(t, "e", "exited")
		// Before any rm: the exit command alone released it all.
		p.AssertNothingLeft([]string{id}, bridge)
		p.Podman("rm", "e")
	})

	t.Run("attached --rm", func(t *testing.T) {
		out, err := p.Exec("podman", "run", "--rm", "--name", "r", "--network", "web", "--ulimit", "host",
			"--rootfs", p.Rootfs, "sh", "-c", "exit 3")
		if code := exitCode(err); code != 3 {
			t.Errorf("podman run --rm … exit 3: status %d, %v: %s", code, err, out)
		}
		if out, err := p.Exec("podman", "container", "exists", "r"); err == nil {
			t.Errorf("r still exists after podman run --rm returned: %s", out)
		}
		p.AssertNothingLeft(nil, bridge)
	})
}

// exitCode is the exit status in err from exec, 0 for nil, -1 otherwise.
func exitCode(err error) int {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	return -1
}
