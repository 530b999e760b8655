package overlay_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/nameserver"
	"github.com/berthnet/berth/pkg/nameserver/sidecar"
)

// utsName gives host h a UTS namespace of its own, named hostN: dnsname
// tells its own entries from other hosts' by the hostname, which all
// simulated hosts would otherwise share with the machine.
func (h *host) utsName(t *testing.T) int {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(orig)
	if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
		t.Fatal(err)
	}
	fd := -1
	err = unix.Sethostname([]byte(fmt.Sprintf("host%d", h.n)))
	if err == nil {
		fd, err = unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if rerr := unix.Setns(orig, unix.CLONE_NEWUTS); rerr != nil {
		// This thread must not go back to the pool with another hostname.
		panic(rerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// runNamed is Run with the container's name in K8S_POD_NAME (dnsname's
// source of names), the plugins started in the host's UTS namespace uts
// (so the daemons they start live there too).
func (h *host) runNamed(t *testing.T, uts int, list *libcni.NetworkConfigList, name string) *nstest.Container {
	t.Helper()
	c := &nstest.Container{NS: nstest.NewNS(t, "ctr"), ID: name}
	c.RC = nstest.Attachment(name, c.NS, "eth0")
	c.RC.Args = [][2]string{{"K8S_POD_NAME", name}}
	t.Cleanup(func() {
		if err := h.RT.Del(context.Background(), list, c.RC); err != nil {
			t.Errorf("cleanup DEL %s: %v", name, err)
		}
	})
	var err error
	func() {
		// The plugin processes fork from this thread, in its namespaces:
		// the host's network namespace and the host's UTS namespace. (Not
		// RT.Add: ns.Do runs its closure on a thread of its own.)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		restore, serr := enter(uts, unix.CLONE_NEWUTS)
		if serr != nil {
			err = serr
			return
		}
		defer restore()
		hostNet, serr := unix.Open(h.Host.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if serr != nil {
			err = serr
			return
		}
		defer unix.Close(hostNet)
		restoreNet, serr := enter(hostNet, unix.CLONE_NEWNET)
		if serr != nil {
			err = serr
			return
		}
		defer restoreNet()
		var r types.Result
		if r, err = h.RT.CNI.AddNetworkList(context.Background(), list, c.RC); err == nil {
			c.Res, err = current.NewResultFromResult(r)
		}
	}()
	if err != nil {
		t.Fatalf("ADD %s: %v", name, err)
	}
	return c
}

// enter moves the calling (locked) thread into the namespace fd of type
// nstype and returns what moves it back.
func enter(fd, nstype int) (func(), error) {
	name := map[int]string{unix.CLONE_NEWUTS: "uts", unix.CLONE_NEWNET: "net"}[nstype]
	orig, err := unix.Open("/proc/thread-self/ns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := unix.Setns(fd, nstype); err != nil {
		unix.Close(orig)
		return nil, err
	}
	return func() {
		defer unix.Close(orig)
		if err := unix.Setns(orig, nstype); err != nil {
			// The thread must not go back to the pool in another namespace.
			panic(err)
		}
	}, nil
}

// dig asks the container's nameserver (its gateway) for name's A record.
func dig(t *testing.T, c *nstest.Container, name string) string {
	t.Helper()
	out := c.NS.MustExec(t, "dig", "+short", "+time=2", "+tries=1", "@"+c.Res.IPs[0].Gateway.String(), name, "A")
	return strings.TrimSpace(out)
}

// TestNamesAcrossHosts: dnsname chained after vxlan-overlay with the etcd
// registry: a container resolves one on another host by name and reaches
// it at that address.
func TestNamesAcrossHosts(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	var conf map[string]any
	if err := json.Unmarshal(c.conf("ovl", 42, "10.96.0.0/16"), &conf); err != nil {
		t.Fatal(err)
	}
	conf["plugins"] = append(conf["plugins"].([]any), map[string]any{
		"type": "dnsname", "domainName": "dns.overlay",
		// Nothing listens there: other names are not this test's business.
		"upstreams": []string{"127.0.0.1:5353"},
		"registry":  map[string]any{"backend": "etcd", "endpoints": []string{c.etcd.url}, "prefix": "/berth-test/registry/"},
	})
	raw, _ := json.Marshal(conf)
	a := h1.runNamed(t, h1.utsName(t), h1.list(raw), "alpha")
	b := h2.runNamed(t, h2.utsName(t), h2.list(raw), "bravo")
	// Wait, on the sidecars' sync barrier, until both have applied etcd's
	// revision after both ADDs (the names of the other host come by watch).
	rev := c.revision(t)
	for _, h := range []*host{h1, h2} {
		sc := &sidecar.Client{Config: sidecar.Config{DataDir: filepath.Join(h.DataDir, "dnsname")}}
		if err := sc.Notify(sidecar.Request{Op: sidecar.OpSync, Network: nameserver.Network{Name: "ovl"}, Revision: rev}, false); err != nil {
			t.Fatalf("host %d's sidecar sync to revision %d: %v", h.n, rev, err)
		}
	}
	if got := dig(t, a, "bravo.dns.overlay"); got != b.IP(t, "4") {
		full, _ := a.NS.Exec("dig", "+time=2", "+tries=1", "@"+a.Res.IPs[0].Gateway.String(), "bravo.dns.overlay", "A")
		log, _ := os.ReadFile(filepath.Join(h1.DataDir, "dnsname", "dnsname.log"))
		t.Fatalf("bravo (host 2) from alpha (host 1): %q, want %s\n%s\nsidecar log:\n%s", got, b.IP(t, "4"), full, log)
	}
	if got := dig(t, b, "alpha"); got != a.IP(t, "4") {
		t.Fatalf("alpha (host 1) from bravo (host 2): %q, want %s", got, a.IP(t, "4"))
	}
	nstest.Ping(t, a.NS, dig(t, a, "bravo"))
}

// revision is etcd's current revision, asked through its JSON gateway
// from the underlay namespace.
func (c *cluster) revision(t *testing.T) int64 {
	t.Helper()
	out, err := c.ul.Exec("curl", "-sSf", "-m", "10", "-X", "POST", c.etcd.url+"/v3/kv/range", "-d", `{"key":"AA=="}`)
	if err != nil {
		t.Fatalf("etcd revision: %v", err)
	}
	var resp struct {
		Header struct {
			Revision int64 `json:"revision,string"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil || resp.Header.Revision == 0 {
		t.Fatalf("etcd revision: %q: %v", out, err)
	}
	return resp.Header.Revision
}
