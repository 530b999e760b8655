// Package fwplugin tests the firewall plugin end to end, chained after the
// real bridge and host-local plugins through libcni, inside a private host
// namespace, with real traffic between private container namespaces.
package fwplugin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// world is a private host namespace with forwarding on and an "outside"
// namespace behind a veth (10.99.0.2, reached through the host's 10.99.0.1)
// standing in for the rest of the network.
type world struct {
	*nstest.Env
	out *nstest.NS
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{Env: nstest.NewEnv(t), out: nstest.NewNS(t, "out")}
	nstest.Veth(t, w.Host, "up0", "10.99.0.1/24", w.out, "eth0", "10.99.0.2/24")
	w.out.MustExec(t, "ip", "route", "add", "10.20.0.0/16", "via", "10.99.0.1")
	w.Host.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return w
}

// network is one bridge network (bridge + host-local + firewall).
type network struct {
	name, bridge, gw string
	list             *libcni.NetworkConfigList
}

func (w *world) network(name string, octet int, fw string) *network {
	w.T.Helper()
	n := &network{name: name, bridge: nstest.UniqueName("br"), gw: fmt.Sprintf("10.20.%d.1", octet)}
	raw := fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
		{"type":"bridge","bridge":%q,"isGateway":true,
		 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.20.%d.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]}},
		{"type":"firewall"%s}]}`, name, n.bridge, octet, fw)
	n.list = nstest.Conflist(w.T, []byte(raw), nstest.DataDir(w.DataDir))
	return n
}

// container is a namespace attached to a network.
type container struct {
	ns *nstest.NS
	rt *libcni.RuntimeConf
	ip string
}

func (w *world) attach(n *network, label string) *container {
	w.T.Helper()
	c := &container{ns: nstest.NewNS(w.T, label)}
	c.rt = nstest.Attachment("ctr-"+label, c.ns, "eth0")
	res, err := w.RT.Add(context.Background(), n.list, c.rt)
	if err != nil {
		w.T.Fatalf("ADD %s to %s: %v", label, n.name, err)
	}
	w.T.Cleanup(func() {
		if err := w.RT.Del(context.Background(), n.list, c.rt); err != nil {
			w.T.Errorf("DEL %s: %v", label, err)
		}
	})
	if len(res.IPs) == 0 {
		w.T.Fatalf("ADD %s: no IP in result", label)
	}
	c.ip = res.IPs[0].Address.IP.String()
	return c
}

func ping(from *nstest.NS, to string) error {
	_, err := from.Exec("ping", "-c1", "-W1", to)
	return err
}

// expect runs pings and reports every mismatch with got before want.
func expect(t *testing.T, cases []reach) {
	t.Helper()
	for _, c := range cases {
		err := ping(c.from.ns, c.to)
		if got := err == nil; got != c.ok {
			t.Errorf("%s: ping %s: got reachable=%v, want %v (%v)", c.what, c.to, got, c.ok, err)
		}
	}
}

type reach struct {
	what string
	from *container
	to   string
	ok   bool
}

func nft(t *testing.T, w *world, args ...string) string {
	t.Helper()
	return w.Host.MustExec(t, append([]string{"nft"}, args...)...)
}

// TestOpen: with the default policy nothing is isolated (the baseline that
// shows the topology routes at all), and the base rules list the IPs.
func TestOpen(t *testing.T) {
	w := newWorld(t)
	a := w.network("neta", 1, "")
	b := w.network("netb", 2, "")
	a1, a2, b1 := w.attach(a, "a1"), w.attach(a, "a2"), w.attach(b, "b1")
	expect(t, []reach{
		{"within a", a1, a2.ip, true},
		{"a to b", a1, b1.ip, true},
		{"b to a", b1, a1.ip, true},
		{"a to outside", a1, "10.99.0.2", true},
	})
	set := nft(t, w, "list", "set", "inet", "berth", "fw-allow4")
	for _, ip := range []string{a1.ip, a2.ip, b1.ip} {
		if !strings.Contains(set, ip) {
			t.Errorf("set fw-allow4: got %s, want %s in it", set, ip)
		}
	}
}

func TestSameBridge(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			w := newWorld(t)
			fw := fmt.Sprintf(`,"backend":%q,"ingressPolicy":"same-bridge"`, backend)
			a := w.network("neta", 1, fw)
			b := w.network("netb", 2, fw)
			a1, a2, b1 := w.attach(a, "a1"), w.attach(a, "a2"), w.attach(b, "b1")
			expect(t, []reach{
				{"within a", a1, a2.ip, true},
				{"a to b", a1, b1.ip, false},
				{"b to a", b1, a1.ip, false},
				{"a to its gateway", a1, a.gw, true},
				{"b to its gateway", b1, b.gw, true},
				{"a to outside", a1, "10.99.0.2", true},
				{"b to outside", b1, "10.99.0.2", true},
			})
		})
	}
}

// TestIsolated: icc off on network a; b is same-bridge. Containers of a
// cannot reach each other but reach the gateway, the outside, and are
// reached through a port published on the host (DNAT).
func TestIsolated(t *testing.T) {
	w := newWorld(t)
	a := w.network("neta", 1, `,"ingressPolicy":"isolated"`)
	b := w.network("netb", 2, `,"ingressPolicy":"same-bridge"`)
	a1, a2, b1 := w.attach(a, "a1"), w.attach(a, "a2"), w.attach(b, "b1")
	b2 := w.attach(b, "b2")
	expect(t, []reach{
		{"within isolated a", a1, a2.ip, false},
		{"within isolated a, back", a2, a1.ip, false},
		{"a to its gateway", a1, a.gw, true},
		{"a to outside", a1, "10.99.0.2", true},
		{"a to b", a1, b1.ip, false},
		{"within same-bridge b", b1, b2.ip, true},
	})

	// A published port: the host DNATs 10.99.0.1:8080 to a2:8080.
	w.Host.MustExec(t, "nft", "add table ip pub; add chain ip pub pre { type nat hook prerouting priority dstnat; }; "+
		"add rule ip pub pre tcp dport 8080 dnat to "+a2.ip+":8080")
	t.Cleanup(func() { _, _ = w.Host.Exec("nft", "delete", "table", "ip", "pub") })
	a2.ns.Start(t, "nc", "-k", "-l", "8080")
	// The listener starts asynchronously: retry the first connection a
	// few times (nc -z: connect and close).
	got, err := w.out.Exec("sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do nc -z -w1 10.99.0.1 8080 && echo connected && exit 0; done; exit 1")
	if err != nil || !strings.Contains(got, "connected") {
		t.Errorf("outside to published port of isolated a2: got %q (%v), want connected", got, err)
	}
	if _, err := a1.ns.Exec("nc", "-z", "-w1", a2.ip, "8080"); err == nil {
		t.Error("a1 to a2:8080 directly: got connected, want blocked (icc off)")
	}

	if !strings.Contains(nft(t, w, "list", "set", "bridge", "berth", "fw-icc-off"), "ctr-a1") {
		t.Error("set bridge berth fw-icc-off: a1's port missing")
	}
}

// TestIsolatedIPTables: icc off with the iptables backend, whose drop
// (-i BR -o BR) sees bridged frames through br_netfilter, as the reference
// and Docker rely on; this kernel turns bridge-nf-call-iptables on in new
// namespaces.
func TestIsolatedIPTables(t *testing.T) {
	w := newWorld(t)
	if out, _ := w.Host.Exec("sysctl", "-n", "net.bridge.bridge-nf-call-iptables"); strings.TrimSpace(out) != "1" {
		t.Fatalf("br_netfilter: bridge-nf-call-iptables is %q in the host namespace, want 1", strings.TrimSpace(out))
	}
	a := w.network("neta", 1, `,"backend":"iptables","ingressPolicy":"isolated"`)
	a1, a2 := w.attach(a, "a1"), w.attach(a, "a2")
	expect(t, []reach{
		{"within isolated a", a1, a2.ip, false},
		{"within isolated a, back", a2, a1.ip, false},
		{"a to its gateway", a1, a.gw, true},
		{"a to outside", a1, "10.99.0.2", true},
	})
}
