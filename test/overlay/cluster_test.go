package overlay_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

// underlayNet is the simulated hosts' shared L2 segment; etcd listens on
// its .254, host i is .i.
const underlayNet = "198.18.0."

// cluster is an underlay namespace with a bridge and the hosts on it.
type cluster struct {
	t     *testing.T
	ul    *nstest.NS
	etcd  *etcd
	hosts []*host
}

// host is a simulated host: its own namespace, runtime and state dirs.
type host struct {
	*nstest.Env
	n    int
	addr string
}

func newCluster(t *testing.T) *cluster {
	t.Helper()
	nstest.RequireRoot(t)
	c := &cluster{t: t, ul: nstest.NewNS(t, "ul")}
	// The MAC is given at creation: a bridge without one takes its
	// lowest port's and changes it as hosts join, leaving the older
	// hosts' ARP entry for etcd's address stale (TestEtcdDown's host 1
	// then never reached the restarted etcd).
	c.ul.MustExec(t, "ip", "link", "add", "ulbr", "address", "02:00:c6:12:00:fe", "type", "bridge")
	c.ul.MustExec(t, "ip", "addr", "add", underlayNet+"254/24", "dev", "ulbr")
	c.ul.MustExec(t, "ip", "link", "set", "ulbr", "up")
	return c
}

// addHost makes host number len(hosts)+1 on the underlay.
func (c *cluster) addHost() *host {
	c.t.Helper()
	n := len(c.hosts) + 1
	h := &host{Env: nstest.NewEnv(c.t), n: n, addr: underlayNet + strconv.Itoa(n)}
	nstest.Veth(c.t, h.Host, "ul0", h.addr+"/24", c.ul, "h"+strconv.Itoa(n), "")
	c.ul.MustExec(c.t, "ip", "link", "set", "h"+strconv.Itoa(n), "master", "ulbr")
	// Runs after the containers' DELs (registered later, run earlier):
	// a daemon still running then (the test killed etcd, say, or left a
	// container) must not outlive the test.
	c.t.Cleanup(func() {
		if c.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(h.DataDir, "vxlan-overlay", "berth-overlayd.log"))
			c.t.Logf("host %d's daemon log:\n%s", n, b)
		}
		h.killDaemon(c.t)
		// A DNS sidecar left by a failed test (dnsname's own DELs stop it).
		killPID(c.t, readPID(filepath.Join(h.DataDir, "dnsname", "sidecar.pid")))
	})
	c.hosts = append(c.hosts, h)
	return h
}

func (h *host) daemonPID() int {
	return readPID(filepath.Join(h.DataDir, "vxlan-overlay", "overlayd", "berth-overlayd.pid"))
}

func readPID(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// killDaemon SIGKILLs the host's daemon, if one runs, and waits for it.
func (h *host) killDaemon(t testing.TB) { killPID(t, h.daemonPID()) }

func killPID(t testing.TB, pid int) {
	if pid == 0 {
		return
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return // gone already
	}
	defer unix.Close(fd)
	_ = syscall.Kill(pid, syscall.SIGKILL)
	waitFD(t, fd, 5*time.Second)
}

// waitFD waits for a pidfd to become readable (the process exited).
func waitFD(t testing.TB, fd int, d time.Duration) {
	t.Helper()
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	n, err := unix.Poll(fds, int(d.Milliseconds()))
	if err != nil {
		t.Fatalf("poll pidfd: %v", err)
	}
	if n == 0 {
		t.Fatalf("process did not exit within %v", d)
	}
}

// conf is an overlay conflist for this cluster, with patches applied to
// the plugin's map.
func (c *cluster) conf(name string, vni int, subnet string, patch ...func(map[string]any)) []byte {
	p := map[string]any{
		"type": "vxlan-overlay", "vni": vni, "subnet": subnet, "hostSubnetLen": 24,
		"underlay": "ul0", "ipMasq": true,
	}
	if c.etcd != nil {
		store := map[string]any{"type": "etcd", "endpoints": []string{c.etcd.url}, "prefix": "/berth-test"}
		if f := c.etcd.tls; f != nil {
			store["tls"] = map[string]any{"trustedCAFile": f.ca, "certFile": f.clientCert, "keyFile": f.clientKey}
		}
		p["store"] = store
	}
	for _, f := range patch {
		f(p)
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": "1.1.0", "name": name, "plugins": []any{p}})
	return b
}

// list is the conflist on host h (its own state directories).
func (h *host) list(raw []byte) *libcni.NetworkConfigList { return h.Conflist(raw) }

// tryRun is Run that returns ADD's error instead of failing the test.
func (h *host) tryRun(list *libcni.NetworkConfigList, id string) (*nstest.Container, error) {
	c := &nstest.Container{NS: nstest.NewNS(h.T, "ctr"), ID: id}
	c.RC = nstest.Attachment(id, c.NS, "eth0")
	res, err := h.RT.Add(context.Background(), list, c.RC)
	if err != nil {
		return c, err
	}
	c.Res = res
	h.T.Cleanup(func() {
		if err := h.RT.Del(context.Background(), list, c.RC); err != nil {
			h.T.Errorf("cleanup DEL %s: %v", id, err)
		}
	})
	return c, nil
}

// cniCode is the CNI error code of err (0 if none).
func cniCode(err error) uint {
	var e *types.Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 0
}

// etcd is a real etcd in the underlay namespace, listening only on the
// underlay address, that a test can stop and start again (same data).
type etcd struct {
	ns   *nstest.NS
	dir  string
	url  string
	cmd  *exec.Cmd
	logf *os.File
	// tls, when set, has etcd serve https and require client certificates.
	tls *tlsFiles
}

func (c *cluster) startEtcd() *etcd { return c.startEtcdWith(nil) }

func (c *cluster) startEtcdWith(tls *tlsFiles) *etcd {
	c.t.Helper()
	scheme := "http"
	if tls != nil {
		scheme = "https"
	}
	e := &etcd{ns: c.ul, dir: c.t.TempDir(), url: scheme + "://" + underlayNet + "254:2379", tls: tls}
	c.etcd = e
	e.start(c.t)
	c.t.Cleanup(func() { e.stop(c.t) })
	return e
}

func (e *etcd) start(t testing.TB) {
	t.Helper()
	pu := "http://" + underlayNet + "254:2380"
	notify := filepath.Join(e.dir, "notify.sock")
	_ = os.Remove(notify)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notify, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if e.logf, err = os.OpenFile(filepath.Join(e.dir, "etcd.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"etcd", "--name", "t", "--data-dir", filepath.Join(e.dir, "data"),
		"--listen-client-urls", e.url, "--advertise-client-urls", e.url,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu, "--initial-cluster", "t=" + pu}
	if e.tls != nil {
		args = append(args, "--cert-file", e.tls.serverCert, "--key-file", e.tls.serverKey,
			"--trusted-ca-file", e.tls.ca, "--client-cert-auth")
	}
	e.cmd = e.ns.Command(args...)
	e.cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notify)
	e.cmd.Stdout, e.cmd.Stderr = e.logf, e.logf
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("etcd: %v (apt-get install -y etcd-server)", err)
	}
	_ = nc.SetReadDeadline(time.Now().Add(30 * time.Second))
	buf := make([]byte, 512)
	for {
		n, err := nc.Read(buf)
		if err != nil {
			b, _ := os.ReadFile(e.logf.Name())
			t.Fatalf("etcd never said READY=1: %v\n%s", err, b)
		}
		if strings.Contains(string(buf[:n]), "READY=1") {
			return
		}
	}
}

func (e *etcd) stop(t testing.TB) {
	if e.cmd == nil {
		return
	}
	_ = e.cmd.Process.Kill()
	_ = e.cmd.Wait()
	e.logf.Close()
	e.cmd = nil
}

// waitRoute waits, on netlink events in h's namespace, until a route to
// dst exists (present) or not (!present) on dev, and returns how long it
// took; it fails the test after timeout.
func (h *host) waitRoute(t testing.TB, dev, dst string, present bool, timeout time.Duration, start time.Time) time.Duration {
	t.Helper()
	_, want, err := net.ParseCIDR(dst)
	if err != nil {
		t.Fatal(err)
	}
	var handle *netlink.Handle
	ch := make(chan netlink.RouteUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	err = h.Host.Do(func(ns.NetNS) error {
		var err error
		if handle, err = netlink.NewHandle(); err != nil {
			return err
		}
		// Subscribed in the namespace before the first look, so no
		// change is missed between the two.
		return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer handle.Close()
	has := func() bool {
		l, err := handle.LinkByName(dev)
		if err != nil {
			return false
		}
		routes, _ := handle.RouteList(l, netlink.FAMILY_V4)
		for _, r := range routes {
			if r.Dst != nil && r.Dst.String() == want.String() {
				return true
			}
		}
		return false
	}
	deadline := time.After(timeout - time.Since(start))
	for has() != present {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: route to %s on %s present=%v not reached within %v", h.Host.Name, dst, dev, present, timeout)
		}
	}
	return time.Since(start)
}

// waitNeigh waits, on neighbour (and FDB) events in h's namespace, until
// cond holds; it fails the test after timeout.
func (h *host) waitNeigh(t testing.TB, cond func() bool, timeout time.Duration) {
	t.Helper()
	ch := make(chan netlink.NeighUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	if err := h.Host.Do(func(ns.NetNS) error {
		return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{})
	}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(timeout)
	for !cond() {
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s: neighbour/FDB state not reached within %v", h.Host.Name, timeout)
		}
	}
}

// subnetOf is the /24 of a container's address.
func subnetOf(ip string) string {
	a := net.ParseIP(ip).To4()
	return fmt.Sprintf("%d.%d.%d.0/24", a[0], a[1], a[2])
}
