package macvlan_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

// EnvVM is set by the VM lane's /init: there the kernel has 802.1q, and a
// VLAN test that would skip fails instead.
const EnvVM = "BERTH_VM"

// lan is the "physical network": the parent eth0 in the test's private
// host namespace, and at its other end a router namespace answering on
// the untagged network (192.168.1.1/24) and, where the kernel has 802.1q,
// on VLAN 100 (10.0.0.1/24) and VLAN 200 (10.0.200.1/24). The host holds
// 192.168.1.254 on the parent, as a host on a LAN does.
type lan struct {
	*nstest.Env
	Router *nstest.NS
}

const (
	parent     = "eth0"
	routerIP   = "192.168.1.1"
	hostIP     = "192.168.1.254"
	router100  = "10.0.0.1"
	router200  = "10.0.200.1"
	vlan100    = "eth0.100"
	vlan200    = "eth0.200"
	subnet200  = "10.0.200.0/24"
	macvlanDir = "macvlan"
)

func newLAN(t *testing.T) *lan {
	t.Helper()
	e := nstest.NewEnv(t)
	r := nstest.NewNS(t, "rtr")
	nstest.Veth(t, e.Host, parent, hostIP+"/24", r, "eth0", routerIP+"/24")
	// Answer ARP only for addresses of the interface it arrives on, so a
	// container on one VLAN cannot find the router's address on another
	// through it.
	r.MustExec(t, "sysctl", "-q", "-w", "net.ipv4.conf.all.arp_ignore=1")
	return &lan{Env: e, Router: r}
}

// withVLANs adds the router's VLAN 100 and 200 sub-interfaces; it skips
// the test (fails it in the VM lane) where the kernel has no 802.1q.
func (l *lan) withVLANs(t *testing.T) {
	t.Helper()
	requireVLAN(t, l.Router)
	for _, v := range []struct{ name, id, addr string }{{"eth0.100", "100", router100 + "/24"}, {"eth0.200", "200", router200 + "/24"}} {
		l.Router.MustExec(t, "ip", "link", "add", "link", "eth0", "name", v.name, "type", "vlan", "id", v.id)
		l.Router.MustExec(t, "ip", "addr", "add", v.addr, "dev", v.name)
		l.Router.MustExec(t, "ip", "link", "set", v.name, "up")
	}
}

// requireVLAN probes 802.1q in n: skipped here when the kernel lacks it,
// pointing at the VM lane; a failure inside the VM lane.
func requireVLAN(t *testing.T, n *nstest.NS) {
	t.Helper()
	out, err := n.Exec("ip", "link", "add", "link", "eth0", "name", "probe.4094", "type", "vlan", "id", "4094")
	if err == nil {
		n.MustExec(t, "ip", "link", "del", "probe.4094")
		return
	}
	if os.Getenv(EnvVM) != "" {
		t.Fatalf("VM lane: the kernel must have 802.1q: %v", out)
	}
	t.Skipf("this kernel has no 802.1q VLAN support (%s): the VLAN tests run in the VM lane, `make test-vm`", strings.TrimSpace(out))
}

// conflist loads a conf-example with the env's state directories and the
// patches applied.
func (l *lan) conflist(t *testing.T, example string, patches ...func(map[string]any)) []byte {
	t.Helper()
	raw := nstest.Example(t, example)
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, p := range patches {
		p(m)
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rangeOf replaces the first plugin's IPAM ranges with one range.
func rangeOf(subnet, start, end, gw string) func(map[string]any) {
	return func(m map[string]any) {
		r := map[string]any{"subnet": subnet}
		for k, v := range map[string]string{"rangeStart": start, "rangeEnd": end, "gateway": gw} {
			if v != "" {
				r[k] = v
			}
		}
		ipam := m["plugins"].([]any)[0].(map[string]any)["ipam"].(map[string]any)
		ipam["ranges"] = []any{[]any{r}}
	}
}

func setName(name string) func(map[string]any) {
	return func(m map[string]any) { m["name"] = name }
}

// hostLink returns the named link in the host namespace, nil when absent.
func (l *lan) hostLink(t testing.TB, name string) netlink.Link {
	t.Helper()
	h := handleIn(t, l.Host)
	lk, err := h.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		t.Fatalf("look up %s: %v", name, err)
	}
	return lk
}

func handleIn(t testing.TB, n *nstest.NS) *netlink.Handle {
	t.Helper()
	fd, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
	fd.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// ipamFiles lists host-local's reservations of network.
func (l *lan) ipamFiles(t testing.TB, network string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(l.DataDir, "networks", network))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, en := range entries {
		n := en.Name()
		if n == "lock" || strings.HasPrefix(n, "last_reserved_ip") || strings.HasPrefix(n, ".") {
			continue
		}
		out = append(out, n)
	}
	return out
}

// stateUsers returns the users recorded for link name in macvlan's
// state directory (nil when it has no file).
func (l *lan) stateUsers(t testing.TB, name string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(l.DataDir, macvlanDir, name+".json"))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Users []struct{ Network, ContainerID, IfName string } `json:"users"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, u := range st.Users {
		out = append(out, u.Network+"/"+u.ContainerID+"/"+u.IfName)
	}
	return out
}

// stateFiles lists macvlan's state files (one per shared link).
func (l *lan) stateFiles(t testing.TB) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(l.DataDir, macvlanDir, "*.json"))
	return m
}

// cniError is the error JSON a plugin prints on stdout.
type cniError struct {
	Code uint   `json:"code"`
	Msg  string `json:"msg"`
}

// runPlugin executes a plugin binary by hand inside the host namespace and
// returns its stdout; wantErr says whether it must fail (then its error
// JSON is decoded).
func runPlugin(t *testing.T, host *nstest.NS, dir, plugin string, env []string, stdin []byte, wantErr bool) (string, cniError) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	var runErr error
	if err := host.Do(func(ns.NetNS) error {
		cmd := exec.Command(filepath.Join(dir, plugin))
		cmd.Env = append(env, "CNI_PATH="+dir)
		cmd.Stdin = bytes.NewReader(stdin)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		runErr = cmd.Run()
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(stderr.String(), "goroutine ") {
		t.Fatalf("%s printed a Go stack trace:\n%s", plugin, stderr.String())
	}
	var e cniError
	if wantErr {
		if runErr == nil {
			t.Fatalf("%s succeeded, want an error; stdout: %s", plugin, stdout.String())
		}
		if err := json.Unmarshal(stdout.Bytes(), &e); err != nil {
			t.Fatalf("%s stdout is not error JSON: %v: %q", plugin, err, stdout.String())
		}
	} else if runErr != nil {
		t.Fatalf("%s failed: %v: %s %s", plugin, runErr, stdout.String(), stderr.String())
	}
	return stdout.String(), e
}

// linkEvents records the link creations and deletions of one name in a
// namespace, from netlink's notifications.
type linkEvents struct {
	mu      sync.Mutex
	name    string
	created map[int]bool // ifindexes seen created
	deleted int
	marks   chan string // aliases seen set on the parent (see sync)
	done    chan struct{}
	n       int
}

func watchLink(t *testing.T, n *nstest.NS, name string) *linkEvents {
	t.Helper()
	fd, err := netns.GetFromPath(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	ch := make(chan netlink.LinkUpdate, 1024)
	ev := &linkEvents{name: name, created: map[int]bool{}, marks: make(chan string, 16), done: make(chan struct{})}
	if err := netlink.LinkSubscribeAt(fd, ch, ev.done); err != nil {
		t.Fatal(err)
	}
	go func() {
		for u := range ch {
			if u.Attrs().Name == parent && strings.HasPrefix(u.Attrs().Alias, "sync-") {
				ev.marks <- u.Attrs().Alias
				continue
			}
			if u.Attrs().Name != name {
				continue
			}
			ev.mu.Lock()
			switch u.Header.Type {
			case unix.RTM_NEWLINK:
				ev.created[int(u.Index)] = true
			case unix.RTM_DELLINK:
				ev.deleted++
			}
			ev.mu.Unlock()
		}
	}()
	t.Cleanup(ev.stop)
	return ev
}

func (ev *linkEvents) stop() {
	select {
	case <-ev.done:
	default:
		close(ev.done)
	}
}

// counts returns how many distinct links of the name were seen and how
// many deletions, once every event before the call has been read: it sets
// a marker alias on the parent and waits for its notification, which the
// kernel sends after all earlier ones.
func (ev *linkEvents) counts(t *testing.T, host *nstest.NS) (created, deleted int) {
	t.Helper()
	ev.n++
	mark := fmt.Sprintf("sync-%d", ev.n)
	host.MustExec(t, "ip", "link", "set", parent, "alias", mark)
	timeout := time.After(30 * time.Second)
	for seen := ""; seen != mark; {
		select {
		case seen = <-ev.marks:
		case <-timeout:
			t.Fatalf("no netlink notification for marker %s", mark)
		}
	}
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return len(ev.created), ev.deleted
}
