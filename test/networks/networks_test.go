// Package networks_test proves issue 4, Docker's user-defined networks, end
// to end: the conf-examples (docker-network, docker-icc-off,
// docker-internal, and the configs nerdctl and Podman write) run through
// libcni with the real bridge, host-local, portmap, firewall, tuning and
// dnsname binaries in private namespaces, and real traffic shows isolation
// between networks, `docker network connect`, icc off, internal networks,
// automatic subnets and Docker's MACs.
package networks_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// TestSeed is the seed: a container on 172.18.0.0/16 cannot ping
// one on 172.17.0.0/16 (two `docker network create`s, automatic subnets).
func TestSeed(t *testing.T) {
	w := newWorld(t)
	first := w.Run(w.network("docker-network.conflist", "first"), "c17")
	second := w.Run(w.network("docker-network.conflist", "second"), "c18")
	if got, want := subnetOf(t, first.Res)+" "+subnetOf(t, second.Res), "172.17.0.0/16 172.18.0.0/16"; got != want {
		t.Fatalf("subnets: got %s, want %s", got, want)
	}
	nstest.NoPing(t, second.NS, first.IP(t, "4"))
	nstest.NoPing(t, first.NS, second.IP(t, "4"))
	// Not a dead network: each reaches its own gateway.
	nstest.Ping(t, first.NS, gateway(t, first.Res))
	nstest.Ping(t, second.NS, gateway(t, second.Res))
}

// TestNetworksIsolated: containers on one network talk freely (ping, TCP);
// nothing crosses between networks in either direction; every container
// reaches its gateway and the outside, which sees the host's address.
func TestNetworksIsolated(t *testing.T) {
	w := newWorld(t)
	netA := w.network("docker-network.conflist", "net-a")
	netB := w.network("docker-network.conflist", "net-b")
	a1, a2 := w.Run(netA, "a1"), w.Run(netA, "a2")
	b1, b2 := w.Run(netB, "b1"), w.Run(netB, "b2")
	for _, c := range []*nstest.Container{a1, a2, b1, b2} {
		serve(t, c.NS, ":80", c.ID)
	}
	serve(t, w.out, outsideIP+":8080", "outside")
	check(t, w, netA, a1.RC)
	check(t, w, netB, b1.RC)
	ip := func(c *nstest.Container) string { return c.IP(t, "4") }

	expect(t, []reach{
		{"a1 to a2 (same network)", a1.NS, ip(a2), 80, "a2 " + ip(a1), true},
		{"a2 to a1 (same network)", a2.NS, ip(a1), 80, "a1 " + ip(a2), true},
		{"b1 to b2 (same network)", b1.NS, ip(b2), 80, "b2 " + ip(b1), true},
		{"a1 to b1 (across)", a1.NS, ip(b1), 80, "", false},
		{"a2 to b2 (across)", a2.NS, ip(b2), 80, "", false},
		{"b1 to a1 (across, back)", b1.NS, ip(a1), 80, "", false},
		{"b2 to a2 (across, back)", b2.NS, ip(a2), 80, "", false},
		{"a1 to its gateway", a1.NS, gateway(t, a1.Res), 0, "", true},
		{"b1 to its gateway", b1.NS, gateway(t, b1.Res), 0, "", true},
		{"a1 to the outside, masqueraded", a1.NS, outsideIP, 8080, "outside " + hostUplink, true},
		{"b2 to the outside, masqueraded", b2.NS, outsideIP, 8080, "outside " + hostUplink, true},
	})
}

// TestNetworkConnect is `docker network connect net-b web`: web, on net-a
// as eth0, gets eth1 on net-b and reaches containers of both networks and
// is reached on both; the others still cannot reach across. Disconnect
// (DEL of eth1) takes net-b away from web again.
func TestNetworkConnect(t *testing.T) {
	w := newWorld(t)
	netA := w.network("docker-network.conflist", "net-a")
	netB := w.network("docker-network.conflist", "net-b")
	web := w.Run(netA, "web")
	a := w.Run(netA, "a-only")
	b := w.Run(netB, "b-only")
	rcB, resB := w.Attach(netB, web, "eth1")

	webA, webB := web.IP(t, "4"), nstest.IP(t, resB, "4")
	aIP, bIP := a.IP(t, "4"), b.IP(t, "4")
	if got := subnetOf(t, resB); got != subnetOf(t, b.Res) {
		t.Fatalf("web's eth1 subnet: got %s, want net-b's %s", got, subnetOf(t, b.Res))
	}
	if out, err := web.NS.Exec("ip", "-4", "-o", "addr", "show", "dev", "eth1"); err != nil || !strings.Contains(out, webB+"/") {
		t.Fatalf("web's eth1: got %q (%v), want %s on it", out, err, webB)
	}
	// The result of eth1 reports net-b's default route: it must be in the
	// container (next to eth0's, as the reference's ECMP-style add leaves
	// it), or CHECK of the same attachment fails.
	gwB := gateway(t, resB)
	if out := web.NS.MustExec(t, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "via "+gwB+" dev eth1") {
		t.Errorf("web's default routes: got\n%s\nwant one via %s dev eth1 (reported in the eth1 result)", out, gwB)
	}
	check(t, w, netA, web.RC)
	check(t, w, netB, rcB)
	for _, c := range []*nstest.Container{web, a, b} {
		serve(t, c.NS, ":80", c.ID)
	}

	expect(t, []reach{
		{"web to a-only over eth0", web.NS, aIP, 80, "a-only " + webA, true},
		{"web to b-only over eth1", web.NS, bIP, 80, "b-only " + webB, true},
		{"a-only to web on net-a", a.NS, webA, 80, "web " + aIP, true},
		{"b-only to web on net-b", b.NS, webB, 80, "web " + bIP, true},
		{"a-only to b-only (across)", a.NS, bIP, 80, "", false},
		{"b-only to a-only (across)", b.NS, aIP, 80, "", false},
		{"b-only to web's net-a address", b.NS, webA, 80, "", false},
		{"a-only to web's net-b address", a.NS, webB, 80, "", false},
	})

	// docker network disconnect net-b web.
	if err := w.RT.Del(context.Background(), netB, rcB); err != nil {
		t.Fatalf("DEL web/eth1 on net-b: %v", err)
	}
	if out, err := web.NS.Exec("ip", "link", "show", "dev", "eth1"); err == nil {
		t.Errorf("eth1 after disconnect: got %q, want no such device", out)
	}
	expect(t, []reach{
		{"web to b-only after disconnect", web.NS, bIP, 80, "", false},
		{"web to a-only after disconnect", web.NS, aIP, 80, "a-only " + webA, true},
	})
}

// TestICCOff is `docker network create -o
// com.docker.network.bridge.enable_icc=false`: containers on the network
// cannot reach each other, but reach the gateway and the outside, and a
// port published with portmap is reached from the outside.
func TestICCOff(t *testing.T) {
	w := newWorld(t)
	list := w.network("docker-icc-off.conflist", "")
	c1 := w.Run(list, "c1")
	web := w.Run(list, "web", publish(8080, 80))
	serve(t, c1.NS, ":80", "c1")
	serve(t, web.NS, ":80", "web")
	serve(t, w.out, outsideIP+":8080", "outside")
	check(t, w, list, c1.RC)
	check(t, w, list, web.RC)
	c1IP, webIP := c1.IP(t, "4"), web.IP(t, "4")

	expect(t, []reach{
		{"c1 to web (icc off)", c1.NS, webIP, 80, "", false},
		{"web to c1 (icc off)", web.NS, c1IP, 80, "", false},
		{"c1 to the gateway", c1.NS, gateway(t, c1.Res), 0, "", true},
		{"web to the gateway", web.NS, gateway(t, web.Res), 0, "", true},
		{"c1 to the outside, masqueraded", c1.NS, outsideIP, 8080, "outside " + hostUplink, true},
		{"the outside to web's published port", w.out, hostUplink, 8080, "web " + outsideIP, true},
	})
}

// TestInternal is `docker network create --internal`: containers on it
// reach each other, but have no default route, the host has no address on
// the bridge, and nothing outside is reachable. Its automatic subnet is
// taken all the same: the next network gets another one and cannot reach
// into it.
func TestInternal(t *testing.T) {
	w := newWorld(t)
	internal := w.network("docker-internal.conflist", "")
	i1, i2 := w.Run(internal, "i1"), w.Run(internal, "i2")
	serve(t, i1.NS, ":80", "i1")
	serve(t, i2.NS, ":80", "i2")
	serve(t, w.out, outsideIP+":8080", "outside")
	check(t, w, internal, i1.RC)

	for _, c := range []*nstest.Container{i1, i2} {
		if routes := c.NS.MustExec(t, "ip", "-4", "route", "show"); strings.Contains(routes, "default") {
			t.Errorf("%s routes: got\n%s\nwant no default route", c.ID, routes)
		}
	}
	if addrs := w.Host.MustExec(t, "ip", "-4", "-o", "addr", "show", "dev", "br-my-internal"); strings.TrimSpace(addrs) != "" {
		t.Errorf("host addresses on br-my-internal: got %q, want none (no gateway)", addrs)
	}

	regular := w.network("docker-network.conflist", "")
	n1 := w.Run(regular, "n1")
	if got, want := subnetOf(t, i1.Res)+" "+subnetOf(t, n1.Res), "172.17.0.0/16 172.18.0.0/16"; got != want {
		t.Errorf("subnets internal, regular: got %s, want %s", got, want)
	}

	i1IP, i2IP := i1.IP(t, "4"), i2.IP(t, "4")
	expect(t, []reach{
		{"i1 to i2", i1.NS, i2IP, 80, "i2 " + i1IP, true},
		{"i2 to i1", i2.NS, i1IP, 80, "i1 " + i2IP, true},
		{"i1 to the outside", i1.NS, outsideIP, 8080, "", false},
		{"i1 to the host's uplink address", i1.NS, hostUplink, 0, "", false},
		{"i2 to the regular network", i2.NS, n1.IP(t, "4"), 0, "", false},
		{"the regular network to i1", n1.NS, i1IP, 80, "", false},
		{"the regular network still reaches the outside", n1.NS, outsideIP, 8080, "outside " + hostUplink, true},
	})
}

// TestAutoSubnets: "subnet": "auto" through the whole chain. Each new
// network takes the first free /16 of Docker's pools, skipping what the
// host already routes or has addresses in; the gateway is the first
// address, on the bridge, reported in the result and the container's
// default route; a network keeps its subnet for later containers.
func TestAutoSubnets(t *testing.T) {
	for _, tc := range []struct {
		name string
		host [][]string // commands run in the host namespace first
		want [2]string  // subnets of the first and second network
	}{
		{"free pools", nil, [2]string{"172.17.0.0/16", "172.18.0.0/16"}},
		{"172.17.0.0/16 routed on the host",
			[][]string{{"ip", "route", "add", "172.17.0.0/16", "via", outsideIP}},
			[2]string{"172.18.0.0/16", "172.19.0.0/16"}},
		{"an address in 172.18.0.0/16 on the host",
			[][]string{{"ip", "addr", "add", "172.18.200.1/24", "dev", "uplink"}},
			[2]string{"172.17.0.0/16", "172.19.0.0/16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			for _, cmd := range tc.host {
				w.Host.MustExec(t, cmd...)
			}
			for i, name := range []string{"first", "second"} {
				list := w.network("docker-network.conflist", name)
				c := w.Run(list, name+"-1")
				prefix := strings.TrimSuffix(tc.want[i], "0.0/16")
				wantIP, wantGW := prefix+"0.2/16", prefix+"0.1"
				if got := c.Res.IPs[0].Address.String() + " gw " + gateway(t, c.Res); got != wantIP+" gw "+wantGW {
					t.Fatalf("%s: result: got %s, want %s gw %s", name, got, wantIP, wantGW)
				}
				if out := w.Host.MustExec(t, "ip", "-4", "-o", "addr", "show", "dev", "br-"+name); !strings.Contains(out, " "+wantGW+"/16 ") {
					t.Errorf("%s: bridge addresses: got %q, want %s/16", name, out, wantGW)
				}
				if out := c.NS.MustExec(t, "ip", "-4", "route", "show", "default"); !strings.Contains(out, "via "+wantGW+" ") {
					t.Errorf("%s: container default route: got %q, want via %s", name, out, wantGW)
				}
				nstest.Ping(t, c.NS, wantGW)
			}
			// The first network keeps its subnet though its bridge now
			// routes it on the host.
			later := w.Run(w.network("docker-network.conflist", "first"), "first-2")
			if got, want := later.Res.IPs[0].Address.String(), strings.TrimSuffix(tc.want[0], "0.0/16")+"0.3/16"; got != want {
				t.Errorf("first network, second container: got %s, want %s", got, want)
			}
		})
	}
}

// TestMacFromIP: with "macFromIP": true a container's MAC is Docker's
// 02:42:<IPv4 bytes> and the result says so; it is off by default.
func TestMacFromIP(t *testing.T) {
	for _, tc := range []struct {
		name    string
		patches []func(map[string]any)
		docker  bool
	}{
		{"macFromIP true", []func(map[string]any){nstest.SetField(0, "macFromIP", true)}, true},
		{"default", nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			list := w.network("docker-network.conflist", "", tc.patches...)
			c := w.Run(list, "mac")
			if got := c.IP(t, "4"); got != "172.17.0.2" {
				t.Fatalf("address: got %s, want 172.17.0.2", got)
			}
			link := strings.Fields(c.NS.MustExec(t, "ip", "-br", "link", "show", "dev", "eth0"))
			if len(link) < 3 {
				t.Fatalf("ip -br link: got %q", link)
			}
			kernel := link[2]
			reported := ""
			for _, ifc := range c.Res.Interfaces {
				if ifc.Name == "eth0" && ifc.Sandbox != "" {
					reported = ifc.Mac
				}
			}
			if reported != kernel {
				t.Errorf("result's eth0 MAC: got %q, want the kernel's %s", reported, kernel)
			}
			const dockerMAC = "02:42:ac:11:00:02"
			if got := kernel == dockerMAC; got != tc.docker {
				t.Errorf("eth0 MAC %s: got Docker's MAC=%v, want %v", kernel, got, tc.docker)
			}
			check(t, w, list, c.RC)
		})
	}
}

// pingBoth checks that two containers reach each other.
func pingBoth(t *testing.T, a, b *nstest.Container) {
	t.Helper()
	expect(t, []reach{
		{fmt.Sprintf("%s to %s", a.ID, b.ID), a.NS, b.IP(t, "4"), 0, "", true},
		{fmt.Sprintf("%s to %s", b.ID, a.ID), b.NS, a.IP(t, "4"), 0, "", true},
	})
}
