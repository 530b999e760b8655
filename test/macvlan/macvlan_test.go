package macvlan_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/internal/nstest"
)

// TestUntagged is a plain macvlan network on the parent: containers get
// addresses on the LAN, reach the router and each other (bridge mode),
// and their interfaces are macvlans of the parent carrying their owner.
func TestUntagged(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "macvlan.conflist"))
	if err := l.RT.Status(context.Background(), list); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
	a := l.Run(list, "untagged-a")
	b := l.Run(list, "untagged-b")

	for _, c := range []*nstest.Container{a, b} {
		if len(c.Res.Interfaces) != 1 || c.Res.Interfaces[0].Sandbox != c.NS.Path || c.Res.Interfaces[0].Name != "eth0" {
			t.Fatalf("result interfaces: got %+v, want one eth0 in %s", c.Res.Interfaces, c.NS.Path)
		}
		nstest.Ping(t, c.NS, routerIP)
		out := c.NS.MustExec(t, "ip", "-d", "link", "show", "eth0")
		if !strings.Contains(out, "macvlan mode bridge") || !strings.Contains(out, "alias berth:lan/"+c.ID+"/eth0") {
			t.Fatalf("container link: got %s, want a bridge-mode macvlan with alias berth:lan/%s/eth0", out, c.ID)
		}
		if route := c.NS.MustExec(t, "ip", "route", "show", "default"); !strings.Contains(route, "via "+routerIP) {
			t.Fatalf("default route: got %q, want via %s", route, routerIP)
		}
	}
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, b.NS, a.IP(t, "4"))
	// The router sees each container under its own MAC.
	out := l.Router.MustExec(t, "ip", "neigh", "show", a.IP(t, "4"))
	if !strings.Contains(out, a.Res.Interfaces[0].Mac) {
		t.Fatalf("router's neighbour entry for %s: got %q, want MAC %s", a.IP(t, "4"), out, a.Res.Interfaces[0].Mac)
	}

	// DEL removes the container's link and reservation; the parent stays.
	if err := l.RT.Del(context.Background(), list, a.RC); err != nil {
		t.Fatal(err)
	}
	if out := a.NS.MustExec(t, "ip", "-o", "link"); strings.Contains(out, "eth0") {
		t.Fatalf("after DEL: %s", out)
	}
	if got := l.ipamFiles(t, "lan"); len(got) != 1 {
		t.Fatalf("reservations after one DEL: got %v, want b's only", got)
	}
	if l.hostLink(t, parent) == nil {
		t.Fatal("the parent went with a container")
	}
}

// TestMacAndIPs: runtimeConfig mac and ips (the capabilities) reach the
// container's interface.
func TestMacAndIPs(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "macvlan.conflist"))
	c := l.Run(list, "caps", func(rc *libcni.RuntimeConf) {
		rc.CapabilityArgs = map[string]any{"mac": "02:00:00:aa:bb:cc", "ips": []string{"192.168.1.150/24"}}
	})
	if got := c.IP(t, "4"); got != "192.168.1.150" {
		t.Fatalf("address: got %s, want 192.168.1.150", got)
	}
	if out := c.NS.MustExec(t, "ip", "link", "show", "eth0"); !strings.Contains(out, "02:00:00:aa:bb:cc") {
		t.Fatalf("MAC: got %s, want 02:00:00:aa:bb:cc", out)
	}
	nstest.Ping(t, c.NS, routerIP)
}

// TestHostAccess: with hostAccess the host reaches its macvlan containers
// (and they reach it) through a shim on the parent; without it, it does
// not. The shim goes with the last container.
func TestHostAccess(t *testing.T) {
	l := newLAN(t)
	plain := l.Conflist(l.conflist(t, "macvlan.conflist"))
	c := l.Run(plain, "noaccess")
	nstest.NoPing(t, l.Host, c.IP(t, "4"))

	list := l.Conflist(l.conflist(t, "macvlan.conflist", setName("lanhost"), nstest.SetField(0, "hostAccess", true),
		rangeOf("192.168.1.0/24", "192.168.1.200", "192.168.1.220", routerIP)))
	a := l.Run(list, "access-a")
	b := l.Run(list, "access-b")
	for _, x := range []*nstest.Container{a, b} {
		nstest.Ping(t, l.Host, x.IP(t, "4"))
		nstest.Ping(t, x.NS, hostIP)
	}
	nstest.NoPing(t, l.Host, c.IP(t, "4"))
	shims := shimLinks(t, l)
	if len(shims) != 1 {
		t.Fatalf("shims: got %d, want one per parent", len(shims))
	}
	shim := shims[0].Attrs().Name
	if err := l.RT.Check(context.Background(), list, a.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}

	// An attachment the runtime forgot (made through another libcni
	// cache, so GC's libcni does not DEL it first): the plugin's GC
	// removes its host route and its use of the shim, which stays.
	xns := nstest.NewNS(t, "ctr")
	other := nstest.NewRuntime(t, l.Host)
	xres, err := other.Add(context.Background(), list, nstest.Attachment("access-x", xns, "eth0"))
	if err != nil {
		t.Fatal(err)
	}
	x := &nstest.Container{NS: xns, ID: "access-x", Res: xres}
	nstest.Ping(t, l.Host, x.IP(t, "4"))
	if err := l.RT.GC(context.Background(), list, a.RC, b.RC); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if out := l.Host.MustExec(t, "ip", "route", "show", "dev", shim); strings.Contains(out, x.IP(t, "4")+" ") || !strings.Contains(out, a.IP(t, "4")) {
		t.Fatalf("routes through %s after GC: got %q, want a's and b's only", shim, out)
	}
	if users := l.stateUsers(t, shim); len(users) != 2 {
		t.Fatalf("users of %s after GC: %v, want a and b", shim, users)
	}
	nstest.Ping(t, l.Host, a.IP(t, "4"))

	if err := l.RT.Del(context.Background(), list, a.RC); err != nil {
		t.Fatal(err)
	}
	if l.hostLink(t, shim) == nil {
		t.Fatal("the shim went while b still uses it")
	}
	if out := l.Host.MustExec(t, "ip", "route", "show", "dev", shim); strings.Contains(out, a.IP(t, "4")) {
		t.Fatalf("a's host route outlived a: %s", out)
	}
	nstest.Ping(t, l.Host, b.IP(t, "4"))
	if err := l.RT.Del(context.Background(), list, b.RC); err != nil {
		t.Fatal(err)
	}
	if l.hostLink(t, shim) != nil {
		t.Fatal("the shim outlived its last container")
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("state left: %v", files)
	}
}

func shimLinks(t *testing.T, l *lan) []netlink.Link {
	t.Helper()
	links, err := handleIn(t, l.Host).LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []netlink.Link
	for _, lk := range links {
		if lk.Attrs().Alias == "berth:macvlan:shim" {
			out = append(out, lk)
		}
	}
	return out
}

// TestDefaultMaster: without master, the interface of the host's IPv4
// default route is the parent, else that of its IPv6 one.
func TestDefaultMaster(t *testing.T) {
	for _, tt := range []struct {
		name  string
		route [][]string
	}{
		{"IPv4", [][]string{{"ip", "route", "add", "default", "via", routerIP}}},
		{"IPv6", [][]string{{"ip", "-6", "addr", "add", "fd00:1::2/64", "dev", parent, "nodad"}, {"ip", "-6", "route", "add", "default", "via", "fd00:1::1", "dev", parent}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := newLAN(t)
			for _, c := range tt.route {
				l.Host.MustExec(t, c...)
			}
			list := l.Conflist(l.conflist(t, "macvlan.conflist", nstest.SetField(0, "master", "")))
			c := l.Run(list, "defmaster")
			nstest.Ping(t, c.NS, routerIP)
			lk, err := handleIn(t, c.NS).LinkByName("eth0")
			if err != nil {
				t.Fatal(err)
			}
			if p := l.hostLink(t, parent); lk.Attrs().ParentIndex != p.Attrs().Index {
				t.Fatalf("parent ifindex: got %d, want %d (%s)", lk.Attrs().ParentIndex, p.Attrs().Index, parent)
			}
		})
	}
}

// TestPodmanExample is what Podman 4 writes for `podman network create -d
// macvlan -o parent=eth0 --subnet 192.168.1.0/24`: CNI 0.4.0, routes and
// the ips capability.
func TestPodmanExample(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "podman-macvlan.conflist"))
	a := l.Run(list, "podman-a")
	b := l.Run(list, "podman-b", func(rc *libcni.RuntimeConf) {
		rc.CapabilityArgs = map[string]any{"ips": []string{"192.168.1.77"}}
	})
	if got := b.IP(t, "4"); got != "192.168.1.77" {
		t.Fatalf("static IP: got %s, want 192.168.1.77", got)
	}
	nstest.Ping(t, a.NS, routerIP)
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	if err := l.RT.Check(context.Background(), list, a.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
}

// TestVersions: every CNI version from 0.3.0 to 1.1.0, ADD, CHECK (from
// 0.4.0), DEL twice.
func TestVersions(t *testing.T) {
	l := newLAN(t)
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			list := l.Conflist(l.conflist(t, "macvlan.conflist", nstest.SetVersion(v), setName("v"+strings.ReplaceAll(v, ".", ""))))
			c := l.Run(list, "ver-"+v)
			nstest.Ping(t, c.NS, routerIP)
			if v != "0.3.0" && v != "0.3.1" {
				if err := l.RT.Check(context.Background(), list, c.RC); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			for i := 0; i < 2; i++ {
				if err := l.RT.Del(context.Background(), list, c.RC); err != nil {
					t.Fatalf("DEL %d: %v", i+1, err)
				}
			}
			if got := l.ipamFiles(t, list.Name); len(got) != 0 {
				t.Fatalf("reservations left: %v", got)
			}
		})
	}
}

// TestCheckAddress: CHECK notices a removed address.
func TestCheckAddress(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "macvlan.conflist"))
	c := l.Run(list, "check-addr")
	if err := l.RT.Check(context.Background(), list, c.RC); err != nil {
		t.Fatalf("CHECK of a healthy attachment: %v", err)
	}
	c.NS.MustExec(t, "ip", "addr", "del", c.Res.IPs[0].Address.String(), "dev", "eth0")
	err := l.RT.Check(context.Background(), list, c.RC)
	if err == nil || !strings.Contains(err.Error(), "lacks address "+c.Res.IPs[0].Address.String()) {
		t.Fatalf("CHECK after removing the address: got %v, want it to name the address", err)
	}
}

// TestLinkInContainer: the master lives in the container's namespace (a
// NIC handed to it), and the macvlan is made beside it there.
func TestLinkInContainer(t *testing.T) {
	l := newLAN(t)
	ns := nstest.NewNS(t, "ctr")
	nstest.Veth(t, ns, "uplink", "", l.Router, "eth1", "192.168.5.1/24")
	list := l.Conflist(l.conflist(t, "macvlan.conflist", setName("inctr"), nstest.SetField(0, "master", "uplink"),
		nstest.SetField(0, "linkInContainer", true), rangeOf("192.168.5.0/24", "192.168.5.10", "192.168.5.20", "192.168.5.1")))
	c := &nstest.Container{NS: ns, ID: "inctr"}
	c.RC, c.Res = l.Attach(list, c, "eth0")
	nstest.Ping(t, ns, "192.168.5.1")
	if err := l.RT.Check(context.Background(), list, c.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := l.RT.Del(context.Background(), list, c.RC); err != nil {
		t.Fatal(err)
	}
	out := ns.MustExec(t, "ip", "-o", "link")
	if strings.Contains(out, "eth0") || !strings.Contains(out, "uplink") {
		t.Fatalf("after DEL: got %s, want uplink and no eth0", out)
	}
}

// TestHostAccessCrash: a plugin killed (SIGKILL) right after making the
// host-access shim leaves nothing GC does not clean: the shim, its state
// and the reservation.
func TestHostAccessCrash(t *testing.T) {
	l := newLAN(t)
	rt := nstest.NewRuntime(t, l.Host)
	rt.CNI.Path = []string{crashBin(t)}
	list := l.Conflist(l.conflist(t, "macvlan.conflist", nstest.SetField(0, "hostAccess", true)))
	ctr := nstest.NewNS(t, "ctr")
	t.Setenv("BERTH_CRASHPOINT", "macvlan-after-shim-create")
	if _, err := rt.Add(context.Background(), list, nstest.Attachment("shimcrash", ctr, "eth0")); err == nil {
		t.Fatal("ADD succeeded through the crash point: is the binary built with -tags crashpoint?")
	}
	if len(shimLinks(t, l)) != 1 || len(l.stateFiles(t)) != 1 {
		t.Fatalf("the crash point was not reached: shims %v, state %v", shimLinks(t, l), l.stateFiles(t))
	}
	os.Unsetenv("BERTH_CRASHPOINT")
	if err := l.RT.GC(context.Background(), list); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if shims := shimLinks(t, l); len(shims) != 0 {
		t.Fatalf("GC left the shim %s", shims[0].Attrs().Name)
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("GC left state: %v", files)
	}
	if got := l.ipamFiles(t, list.Name); len(got) != 0 {
		t.Fatalf("GC left reservations: %v", got)
	}
}

// TestDelWithoutAdd: DEL succeeds without a prior ADD, without a netns and
// with a netns that is gone, on a plain and on a VLAN network (no kernel
// VLAN support is needed to remove nothing).
func TestDelWithoutAdd(t *testing.T) {
	l := newLAN(t)
	for _, example := range []string{"macvlan.conflist", "macvlan100.conflist"} {
		list := l.Conflist(l.conflist(t, example))
		ctr := nstest.NewNS(t, "ctr")
		for _, rc := range []*libcni.RuntimeConf{
			nstest.Attachment("never-added", ctr, "eth0"),
			{ContainerID: "no-netns", IfName: "eth0"},
			{ContainerID: "gone-netns", NetNS: "/run/netns/" + nstest.Prefix() + "-gone", IfName: "eth0"},
		} {
			for i := 0; i < 2; i++ {
				if err := l.RT.Del(context.Background(), list, rc); err != nil {
					t.Fatalf("%s: DEL %s (%d): %v", example, rc.ContainerID, i+1, err)
				}
			}
		}
	}
	if files := l.stateFiles(t); len(files) != 0 {
		t.Fatalf("DEL left state: %v", files)
	}
}

// TestContainerModeJoin: macvlan records its attachments as bridge does,
// so a container can join a macvlan container's stack by name
// (--net=container:web) and is on the LAN through it.
func TestContainerModeJoin(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "macvlan.conflist"))
	named := func(name string) func(*libcni.RuntimeConf) {
		return func(rc *libcni.RuntimeConf) { rc.Args = append(rc.Args, [2]string{"K8S_POD_NAME", name}) }
	}
	web := l.Run(list, "macjoin-web", named("web"))
	join := l.Conflist(nstest.Example(t, "docker-container-mode.conflist"))
	side := l.Run(join, "macjoin-side", named("side"), func(rc *libcni.RuntimeConf) {
		rc.Args = append(rc.Args, [2]string{"CONTAINER", "web"})
	})
	if got, want := nstest.IP(t, side.Res, "4"), web.IP(t, "4"); got != want {
		t.Fatalf("joiner's result address: got %s, want the target's %s", got, want)
	}
	nstest.Ping(t, side.NS, routerIP)

	// The target's DEL forgets it: a new join by its name is code 3.
	if err := l.RT.Del(context.Background(), list, web.RC); err != nil {
		t.Fatal(err)
	}
	rc := nstest.Attachment("macjoin-late", nstest.NewNS(t, "late"), "eth0")
	rc.Args = append(rc.Args, [2]string{"CONTAINER", "web"})
	_, err := l.RT.Add(context.Background(), join, rc)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 3 {
		t.Fatalf("join of a deleted macvlan container: got %v, want code 3", err)
	}
	_ = l.RT.Del(context.Background(), join, rc)
}

// TestRepeatedAdd: a runtime retrying an ADD of a live attachment gets
// code 101 and the first container keeps its reservation and traffic
// (issue 8's first defect, which macvlan must not have either).
func TestRepeatedAdd(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "macvlan.conflist"))
	a := l.Run(list, "repeat-a")
	_, err := l.RT.Add(context.Background(), list, a.RC)
	var cniErr *types.Error
	if !errors.As(err, &cniErr) || cniErr.Code != 101 {
		t.Fatalf("repeated ADD: got %v, want code 101", err)
	}
	if got := l.ipamFiles(t, "lan"); len(got) != 1 {
		t.Fatalf("reservations after the repeated ADD: got %v, want a's", got)
	}
	b := l.Run(list, "repeat-b")
	if a.IP(t, "4") == b.IP(t, "4") {
		t.Fatalf("the next container got the first's address %s", a.IP(t, "4"))
	}
	nstest.Ping(t, a.NS, routerIP)
	nstest.Ping(t, b.NS, a.IP(t, "4"))
}

// TestConcurrentRepeatedAdds: the same ADD sent several times at once (a
// runtime retrying while the first still runs): one wins, the others get
// 101 and undo nothing of the winner's, its reservation included.
func TestConcurrentRepeatedAdds(t *testing.T) {
	l := newLAN(t)
	list := l.Conflist(l.conflist(t, "macvlan.conflist"))
	for round := 0; round < 5; round++ {
		c := &nstest.Container{NS: nstest.NewNS(t, "ctr"), ID: fmt.Sprintf("dup-%d", round)}
		rc := nstest.Attachment(c.ID, c.NS, "eth0")
		t.Cleanup(func() { _ = l.RT.Del(context.Background(), list, rc) })
		const n = 4
		var wg sync.WaitGroup
		results := make([]*current.Result, n)
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = l.RT.Add(context.Background(), list, rc)
			}()
		}
		wg.Wait()
		var won *current.Result
		for i := range n {
			var cniErr *types.Error
			switch {
			case errs[i] == nil && won != nil:
				t.Fatalf("round %d: two concurrent ADDs of one attachment succeeded", round)
			case errs[i] == nil:
				won = results[i]
			case !errors.As(errs[i], &cniErr) || cniErr.Code != 101:
				t.Fatalf("round %d: a losing ADD: got %v, want code 101", round, errs[i])
			}
		}
		if won == nil {
			t.Fatalf("round %d: no ADD succeeded: %v", round, errs)
		}
		if got := l.ipamFiles(t, "lan"); len(got) != round+1 {
			t.Fatalf("round %d: reservations %v, want one per winner so far", round, got)
		}
		nstest.Ping(t, c.NS, routerIP)
	}
}
