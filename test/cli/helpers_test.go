package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
	"github.com/berthnet/berth/pkg/inspect"
)

func TestMain(m *testing.M) { nstest.Main(m) }

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const (
	hostOutIP = "192.0.2.1" // the private host's "public" address
	outIP     = "192.0.2.2" // an outside client
)

// world is a private host namespace running the plugins, a CNI config
// directory the berth command reads, and an outside namespace linked to
// the host on 192.0.2.0/24.
type world struct {
	*nstest.Env
	confDir string
	// cacheDir is libcni's cache for the DELs berth gc/prune run.
	cacheDir string
	out      *nstest.NS
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{Env: nstest.NewEnv(t), confDir: t.TempDir(), cacheDir: t.TempDir(), out: nstest.NewNS(t, "out")}
	nstest.Veth(t, w.Host, "up0", hostOutIP+"/24", w.out, "eth0", outIP+"/24")
	w.Host.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return w
}

// network writes a bridge + host-local + portmap + loopback network to the
// config dir (docker-bridge-ports.conflist with its own name, bridge and
// subnet, and the test's state dirs) and returns it.
func (w *world) network(t *testing.T, name, bridge, subnet string, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	t.Helper()
	return w.networkFrom(t, "docker-bridge-ports.conflist", name, bridge, subnet, patches...)
}

// networkFrom is network from another conf-examples file whose first
// plugin is the bridge.
func (w *world) networkFrom(t *testing.T, example, name, bridge, subnet string, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	t.Helper()
	gw := strings.TrimSuffix(subnet, "0/24") + "1"
	all := append([]func(map[string]any){
		func(m map[string]any) { m["name"] = name },
		nstest.SetField(0, "bridge", bridge),
		// dataDir: the test's own store, never the machine's.
		nstest.SetField(0, "ipam", map[string]any{"type": "host-local", "dataDir": filepath.Join(w.DataDir, "networks"),
			"ranges": []any{[]any{map[string]any{"subnet": subnet, "gateway": gw}}}}),
	}, patches...)
	list := w.Conflist(nstest.Example(t, example), all...)
	// Indented, so the golden config is readable.
	var buf bytes.Buffer
	if err := json.Indent(&buf, list.Bytes, "", "  "); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(w.confDir, name+".conflist"), buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.NetworkConfFromFile(filepath.Join(w.confDir, name+".conflist"))
	if err != nil {
		t.Fatal(err)
	}
	return list
}

type mapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
}

type ctr struct {
	id, name string
	ns       *sandbox.NS
	rc       *libcni.RuntimeConf
	res      *current.Result
}

// run attaches a new container (its own namespace, named by the runtime
// through K8S_POD_NAME) to list; DEL and the namespace's removal run on
// cleanup. The namespace may be deleted by the test (stale attachments).
func (w *world) run(t *testing.T, list *libcni.NetworkConfigList, id, name string, maps ...mapping) *ctr {
	t.Helper()
	var caps map[string]any
	if len(maps) > 0 {
		caps = map[string]any{"portMappings": maps}
	}
	return w.start(t, list, id, name, caps)
}

// runAliased is run with DNS aliases for the list's network (dnsname's
// aliases capability, as Podman passes them).
func (w *world) runAliased(t *testing.T, list *libcni.NetworkConfigList, id, name string, aliases ...string) *ctr {
	t.Helper()
	return w.start(t, list, id, name, map[string]any{"aliases": map[string][]string{list.Name: aliases}})
}

func (w *world) start(t *testing.T, list *libcni.NetworkConfigList, id, name string, caps map[string]any) *ctr {
	t.Helper()
	n, err := sandbox.NewNS(nstest.UniqueName("c"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, err := os.Stat(n.Path); err == nil {
			if err := n.Delete(); err != nil {
				t.Error(err)
			}
		}
	})
	c := &ctr{id: id, name: name, ns: n}
	c.rc = &libcni.RuntimeConf{ContainerID: id, NetNS: n.Path, IfName: "eth0", Args: [][2]string{{"K8S_POD_NAME", name}}}
	c.rc.CapabilityArgs = caps
	t.Cleanup(func() {
		if err := w.RT.Del(context.Background(), list, c.rc); err != nil {
			t.Errorf("cleanup DEL %s: %v", id, err)
		}
	})
	if c.res, err = w.RT.Add(context.Background(), list, c.rc); err != nil {
		t.Fatalf("ADD %s: %v", id, err)
	}
	return c
}

// kill removes the container's namespace without DEL (a runtime that
// crashed): its records become stale.
func (c *ctr) kill(t *testing.T) {
	t.Helper()
	if err := c.ns.Delete(); err != nil {
		t.Fatal(err)
	}
}

// mac is the container interface's MAC as the kernel has it.
func (c *ctr) mac(t *testing.T) string {
	t.Helper()
	out, err := c.ns.Exec("cat", "/sys/class/net/eth0/address")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// berth runs the built berth command inside the private host namespace
// with the test's config dir; it returns stdout, stderr and the exit code.
func (w *world) berth(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	bin := filepath.Join(nstest.CNIPath(t), "berth")
	cmd := exec.Command("ip", append([]string{"netns", "exec", w.Host.Name, bin}, args...)...)
	cmd.Env = append(os.Environ(), "BERTH_CONF_DIR="+w.confDir, "CNI_PATH="+nstest.CNIPath(t), "CNI_CACHE_DIR="+w.cacheDir)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return so.String(), se.String(), code
}

// mustBerth is berth that fails the test unless it exits 0.
func (w *world) mustBerth(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := w.berth(t, args...)
	if code != 0 {
		t.Fatalf("berth %v: exit %d\n%s%s", args, code, out, errOut)
	}
	return out
}

func (w *world) inspect(t *testing.T, name string) *inspect.Network {
	t.Helper()
	var nets []*inspect.Network
	if err := json.Unmarshal([]byte(w.mustBerth(t, "network", "inspect", "--json", name)), &nets); err != nil {
		t.Fatal(err)
	}
	if len(nets) != 1 {
		t.Fatalf("inspect %s: %d networks", name, len(nets))
	}
	return nets[0]
}

// serve starts an HTTP server on :80 inside c answering "hello from <id>".
func (c *ctr) serve(t *testing.T) {
	t.Helper()
	var l net.Listener
	err := c.ns.Do(func(ns.NetNS) (err error) {
		l, err = net.Listen("tcp", ":80")
		return err
	})
	if err != nil {
		t.Fatalf("server in %s: %v", c.id, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(rw, "hello from %s", c.id)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

// httpGet fetches url from inside n (nstest.HTTPGet).
func httpGet(n *nstest.NS, url string) (string, error) {
	return nstest.HTTPGet(n, url, 10*time.Second)
}

var (
	macRE   = regexp.MustCompile(`([0-9a-f]{2}:){5}[0-9a-f]{2}`)
	netnsRE = regexp.MustCompile(`/run/netns/[A-Za-z0-9_.-]+`)
)

// normalise makes output stable across runs: temporary dirs, namespace
// and bridge names (per-run prefix) and MACs (random) become placeholders; IDs, addresses and host
// veth names are the test's own and stay.
func (w *world) normalise(s string, bridges ...string) string {
	for _, b := range bridges {
		s = strings.ReplaceAll(s, b, "$BRIDGE")
	}
	s = strings.ReplaceAll(s, w.confDir, "$CONF")
	s = strings.ReplaceAll(s, w.DataDir, "$DATA")
	s = netnsRE.ReplaceAllString(s, "/run/netns/$$NS")
	return macRE.ReplaceAllString(s, "xx:xx:xx:xx:xx:xx")
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Fatalf("%s differs from the golden file (run with -update after checking):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}
