package link

// Tests against the kernel: each makes its own network namespaces (named
// with the test run's prefix, removed on cleanup) and acts only there.

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

// newNS makes a namespace and opens it; tests that need one skip when not
// root (make unit runs unprivileged).
func newNS(t *testing.T, label string) (*NS, *nstest.NS) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces and links")
	}
	n := nstest.NewNS(t, label)
	h, err := OpenNS(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h, n
}

func TestOpenNSMissing(t *testing.T) {
	_, err := OpenNS(filepath.Join(t.TempDir(), "gone"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("OpenNS of a missing path: got %v, want os.ErrNotExist (DEL's \"already gone\")", err)
	}
}

func TestHostVethName(t *testing.T) {
	a := HostVethName("c1", "eth0")
	if a != HostVethName("c1", "eth0") {
		t.Fatal("not deterministic")
	}
	if a == HostVethName("c1", "eth1") || a == HostVethName("c2", "eth0") {
		t.Fatal("two attachments share a name")
	}
	if len(a) != 12 || !strings.HasPrefix(a, "veth") || ValidName(a) != nil {
		t.Fatalf("got %q, want veth + 8 hex digits", a)
	}
}

// TestEnsureBridge: created up with a pinned MAC that a port with a lower
// MAC does not change; a second call finds the same bridge; a link of
// another type under the name is an error.
func TestEnsureBridge(t *testing.T) {
	host, _ := newNS(t, "host")
	h := host.Handle
	br, err := EnsureBridge(h, "br-test", 1400, true)
	if err != nil {
		t.Fatal(err)
	}
	mac := br.Attrs().HardwareAddr
	// As the kernel has it (the returned attributes predate promisc on).
	kb, err := h.LinkByName("br-test")
	if err != nil {
		t.Fatal(err)
	}
	if kb.Attrs().Flags&net.FlagUp == 0 || kb.Attrs().MTU != 1400 || kb.Attrs().Promisc == 0 {
		t.Fatalf("bridge: flags %v mtu %d promisc %d; want up, 1400, on", kb.Attrs().Flags, kb.Attrs().MTU, kb.Attrs().Promisc)
	}
	if kb.Attrs().Alias != BridgeAlias {
		t.Fatalf("bridge alias %q, want %q (berth's owner mark, set at creation)", kb.Attrs().Alias, BridgeAlias)
	}
	if mac[0]&1 != 0 || mac[0]&2 == 0 {
		t.Fatalf("MAC %s: want unicast, locally administered", mac)
	}
	port := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "port0", MasterIndex: br.Attrs().Index,
		HardwareAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}}, PeerName: "port0p"}
	if err := h.LinkAdd(port); err != nil {
		t.Fatal(err)
	}
	again, err := EnsureBridge(h, "br-test", 1400, true)
	if err != nil {
		t.Fatal(err)
	}
	if again.Attrs().Index != br.Attrs().Index || again.Attrs().HardwareAddr.String() != mac.String() {
		t.Fatalf("second call: index %d MAC %s, want %d %s (pinned, a lower port MAC must not take over)",
			again.Attrs().Index, again.Attrs().HardwareAddr, br.Attrs().Index, mac)
	}
	if _, err := EnsureBridge(h, "port0", 0, false); err == nil || !strings.Contains(err.Error(), "not a bridge") {
		t.Fatalf("EnsureBridge over a veth: got %v, want \"not a bridge\"", err)
	}
}

// TestVethAddresses: the pair is made with its peer directly in the
// container namespace; ConfigureIface gives it addresses and routes (a
// route without gateway takes its family's); DelLink removes the pair and
// is idempotent.
func TestVethAddresses(t *testing.T) {
	host, _ := newNS(t, "host")
	ctr, _ := newNS(t, "ctr")
	br, err := EnsureBridge(host.Handle, "br-test", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	gw := &net.IPNet{IP: net.ParseIP("10.7.0.1").To4(), Mask: net.CIDRMask(24, 32)}
	if err := EnsureGatewayAddr(host.Handle, br, gw, false); err != nil {
		t.Fatal(err)
	}
	peerMAC := net.HardwareAddr{0x02, 0x42, 10, 7, 0, 2}
	hostEnd, err := AddVeth(host.Handle, Veth{HostName: "vtest0", Master: br, MTU: 1450, PeerName: "eth0", PeerMAC: peerMAC, PeerNS: ctr, HostUp: true})
	if err != nil {
		t.Fatal(err)
	}
	if hostEnd.Attrs().MasterIndex != br.Attrs().Index || hostEnd.Attrs().MTU != 1450 {
		t.Fatalf("host end: master %d mtu %d, want %d 1450", hostEnd.Attrs().MasterIndex, hostEnd.Attrs().MTU, br.Attrs().Index)
	}
	addr := net.IPNet{IP: net.ParseIP("10.7.0.2").To4(), Mask: net.CIDRMask(24, 32)}
	ips := []*current.IPConfig{{Address: addr, Gateway: gw.IP}}
	routes := []*Route{{Dst: net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}}
	if err := ConfigureIface(ctr, "eth0", ips, routes); err != nil {
		t.Fatal(err)
	}
	peer, err := ctr.Handle.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if peer.Attrs().HardwareAddr.String() != peerMAC.String() || peer.Attrs().MTU != 1450 || peer.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("peer: MAC %s mtu %d flags %v; want %s, 1450, up", peer.Attrs().HardwareAddr, peer.Attrs().MTU, peer.Attrs().Flags, peerMAC)
	}
	got, err := IfaceAddrs(ctr, "eth0")
	if err != nil || len(got) != 1 || got[0].String() != addr.String() {
		t.Fatalf("IfaceAddrs: got %v, %v; want [%s]", got, err, &addr)
	}
	rs, err := ctr.Handle.RouteList(peer, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var def *netlink.Route
	for i := range rs {
		if rs[i].Dst == nil || rs[i].Dst.IP.IsUnspecified() {
			def = &rs[i]
		}
	}
	if def == nil || !def.Gw.Equal(gw.IP) {
		t.Fatalf("routes %v: want a default route via %s (the address's gateway)", rs, gw.IP)
	}
	// Again: the same address and route are not errors.
	if err := ConfigureIface(ctr, "eth0", ips, routes); err != nil {
		t.Fatalf("ConfigureIface again: %v", err)
	}
	for i := range 2 {
		if err := DelLink(host.Handle, "vtest0"); err != nil {
			t.Fatalf("DelLink #%d: %v", i+1, err)
		}
	}
	if _, err := ctr.Handle.LinkByName("eth0"); !IsNotFound(err) {
		t.Fatalf("peer after DelLink: got %v, want not found", err)
	}
}

// TestEnsureGatewayAddr: another address in the gateway's subnet is a
// conflict unless forced, then replaced; the gateway itself is idempotent.
func TestEnsureGatewayAddr(t *testing.T) {
	host, _ := newNS(t, "host")
	br, err := EnsureBridge(host.Handle, "br-test", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	other := &net.IPNet{IP: net.ParseIP("10.8.0.9").To4(), Mask: net.CIDRMask(24, 32)}
	if err := AddAddr(host.Handle, br, other); err != nil {
		t.Fatal(err)
	}
	gw := &net.IPNet{IP: net.ParseIP("10.8.0.1").To4(), Mask: net.CIDRMask(24, 32)}
	if err := EnsureGatewayAddr(host.Handle, br, gw, false); err == nil || !strings.Contains(err.Error(), "forceAddress") {
		t.Fatalf("gateway beside another address of its subnet: got %v, want a conflict naming forceAddress", err)
	}
	for range 2 {
		if err := EnsureGatewayAddr(host.Handle, br, gw, true); err != nil {
			t.Fatal(err)
		}
	}
	addrs, err := host.Handle.AddrList(br, netlink.FAMILY_V4)
	if err != nil || len(addrs) != 1 || !addrs[0].IP.Equal(gw.IP) {
		t.Fatalf("addresses: got %v, %v; want only %s", addrs, err, gw)
	}
}

// TestAddRouteSecondDevice: a route to a destination another device already
// routes is appended (docker network connect's second default route).
func TestAddRouteSecondDevice(t *testing.T) {
	ctr, _ := newNS(t, "ctr")
	var devs []netlink.Link
	for i, name := range []string{"d0", "d1"} {
		// A veth with its peer up stands in for any device (this kernel
		// has no dummy driver).
		if err := ctr.Handle.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, Flags: net.FlagUp}, PeerName: name + "p"}); err != nil {
			t.Fatal(err)
		}
		if err := ctr.Handle.LinkSetUp(&netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: name + "p"}}); err != nil {
			t.Fatal(err)
		}
		l, err := ctr.Handle.LinkByName(name)
		if err != nil {
			t.Fatal(err)
		}
		a := &net.IPNet{IP: net.IPv4(10, 9, byte(i), 2).To4(), Mask: net.CIDRMask(24, 32)}
		if err := AddAddr(ctr.Handle, l, a); err != nil {
			t.Fatal(err)
		}
		devs = append(devs, l)
	}
	_, def, _ := net.ParseCIDR("0.0.0.0/0")
	for i, l := range devs {
		if err := AddRoute(ctr.Handle, l, def, net.IPv4(10, 9, byte(i), 1), 0); err != nil {
			t.Fatalf("default route via %s: %v", l.Attrs().Name, err)
		}
	}
	if err := AddRoute(ctr.Handle, devs[0], def, net.IPv4(10, 9, 0, 1), 0); err != nil {
		t.Fatalf("the same route again: %v", err)
	}
	rs, err := ctr.Handle.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: def}, netlink.RT_FILTER_DST)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 {
		t.Fatalf("default routes: got %v, want one per device", rs)
	}
}

// TestSysctlInNamespace: sysctls act on the calling thread's namespace;
// a key with a dotted interface name goes in slashed form; the kernel's
// refusal of a value is the error.
func TestSysctlInNamespace(t *testing.T) {
	_, n := newNS(t, "ctr")
	if _, err := n.Exec("ip", "link", "add", "br.0", "type", "bridge"); err != nil {
		t.Fatal(err)
	}
	key := "net/ipv4/conf/br.0/forwarding"
	err := n.Do(func(ns.NetNS) error {
		if err := Sysctl(key, "1"); err != nil {
			return err
		}
		if v, err := ReadSysctl(SysctlPath(key)); err != nil || v != "1" {
			t.Errorf("after Sysctl: got %q, %v; want 1", v, err)
		}
		if err := WriteSysctl(SysctlPath("net.ipv4.conf.lo.arp_ignore"), "nine"); !errors.Is(err, unix.EINVAL) {
			t.Errorf("bad value: got %v, want EINVAL", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The root namespace has no br.0: nothing was written there.
	if _, err := os.Stat(SysctlPath(key)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s in the test's own namespace: %v, want none", key, err)
	}
}
