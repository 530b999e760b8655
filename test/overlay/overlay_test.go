package overlay_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// tcpPeer connects from a to b's port over TCP and returns the source
// address b's server saw.
func tcpPeer(t *testing.T, a, b *nstest.Container) string {
	t.Helper()
	return tcpSource(t, a, b.NS, b.IP(t, "4"))
}

// tcpSource connects from a to a server at bip in b and returns the
// source address the server saw.
func tcpSource(t *testing.T, a *nstest.Container, b *nstest.NS, bip string) string {
	t.Helper()
	var l net.Listener
	if err := b.Do(func(ns.NetNS) error {
		var err error
		l, err = net.Listen("tcp", net.JoinHostPort(bip, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	seen := make(chan string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			seen <- "accept: " + err.Error()
			return
		}
		defer conn.Close()
		host, _, _ := net.SplitHostPort(conn.RemoteAddr().String())
		_, _ = conn.Write([]byte(host + "\n"))
		seen <- host
	}()
	var reply string
	if err := a.NS.Do(func(ns.NetNS) error {
		conn, err := net.DialTimeout("tcp", l.Addr().String(), 3*time.Second)
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		reply, err = bufio.NewReader(conn).ReadString('\n')
		return err
	}); err != nil {
		t.Fatalf("TCP from %s to %s: %v", a.IP(t, "4"), l.Addr(), err)
	}
	if got := <-seen; got != strings.TrimSpace(reply) {
		t.Fatalf("server saw %q, client was told %q", got, reply)
	}
	return strings.TrimSpace(reply)
}

// TestCrossHost: containers on two hosts talk (ping, TCP) with their own
// source addresses, and a packet of the full container MTU crosses with DF
// set; the MTU is the underlay's minus 50.
func TestCrossHost(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	if subnetOf(a.IP(t, "4")) == subnetOf(b.IP(t, "4")) {
		t.Fatalf("both hosts got subnet %s", subnetOf(a.IP(t, "4")))
	}
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, b.NS, a.IP(t, "4"))
	if got := tcpPeer(t, a, b); got != a.IP(t, "4") {
		t.Fatalf("source address seen on host 2: %s, want %s (no NAT inside the overlay)", got, a.IP(t, "4"))
	}
	if got := tcpPeer(t, b, a); got != b.IP(t, "4") {
		t.Fatalf("source address seen on host 1: %s, want %s", got, b.IP(t, "4"))
	}
	mtu := a.NS.MustExec(t, "cat", "/sys/class/net/eth0/mtu")
	if strings.TrimSpace(mtu) != "1450" {
		t.Fatalf("container MTU %s, want 1450 (underlay 1500 - 50)", mtu)
	}
	if out, err := a.NS.Exec("ping", "-c", "1", "-W", "2", "-M", "do", "-s", strconv.Itoa(1450-28), b.IP(t, "4")); err != nil {
		t.Fatalf("full-MTU ping with DF: %v\n%s", err, out)
	}
	if _, err := a.NS.Exec("ping", "-c", "1", "-W", "1", "-M", "do", "-s", strconv.Itoa(1450-27), b.IP(t, "4")); err == nil {
		t.Fatal("a ping one byte over the MTU with DF went through")
	}
	// Per host, not per container: one route, neighbour and FDB entry for
	// the one remote host whatever the number of containers.
	h1.Run(h1.list(raw), "alpha2")
	h2.Run(h2.list(raw), "bravo2")
	routes := h1.Host.MustExec(t, "ip", "route", "show", "dev", "berthvx42")
	if n := strings.Count(strings.TrimSpace(routes), "\n") + 1; n != 1 || !strings.Contains(routes, subnetOf(b.IP(t, "4"))+" via") {
		t.Fatalf("routes on berthvx42 of host 1:\n%s\nwant exactly one, to %s", routes, subnetOf(b.IP(t, "4")))
	}
	fdb := h1.Host.MustExec(t, "bridge", "fdb", "show", "dev", "berthvx42")
	if !strings.Contains(fdb, "dst "+h2.addr) {
		t.Fatalf("fdb of host 1 has no entry toward %s:\n%s", h2.addr, fdb)
	}
}

// TestConcurrentFirstADDs: a host's first ADDs, all at once, claim one
// subnet and start one daemon; every container reaches another host.
func TestConcurrentFirstADDs(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	peer := h2.Run(h2.list(raw), "peer")
	list := h1.list(raw)
	const n = 8
	ctrs := make([]*nstest.Container, n)
	errs := make(chan error, n)
	for i := range ctrs {
		ctrs[i] = &nstest.Container{NS: nstest.NewNS(t, "ctr"), ID: fmt.Sprintf("par%d", i)}
		ctrs[i].RC = nstest.Attachment(ctrs[i].ID, ctrs[i].NS, "eth0")
		rc := ctrs[i].RC
		t.Cleanup(func() {
			if err := h1.RT.Del(context.Background(), list, rc); err != nil {
				t.Errorf("cleanup DEL: %v", err)
			}
		})
	}
	for i := range ctrs {
		go func(c *nstest.Container) {
			var err error
			c.Res, err = h1.RT.Add(context.Background(), list, c.RC)
			errs <- err
		}(ctrs[i])
	}
	for range ctrs {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent ADD: %v", err)
		}
	}
	subnets := map[string]bool{}
	for _, ctr := range ctrs {
		subnets[subnetOf(ctr.IP(t, "4"))] = true
		nstest.Ping(t, ctr.NS, peer.IP(t, "4"))
	}
	if len(subnets) != 1 {
		t.Fatalf("one host, %d subnets: %v", len(subnets), subnets)
	}
	if out := c.ul.MustExec(t, "curl", "-sSf", "-m", "10", "-X", "POST", c.etcd.url+"/v3/kv/range",
		"-d", `{"key":"L2JlcnRoLXRlc3Qvb3ZlcmxheS80Mi9zdWJuZXRzLw==","range_end":"L2JlcnRoLXRlc3Qvb3ZlcmxheS80Mi9zdWJuZXRzMA==","count_only":true}`); !strings.Contains(out, `"count":"2"`) {
		t.Fatalf("leases in etcd: %s, want 2 (one per host)", out)
	}
}

// TestMasquerade: traffic leaving the overlay (to a network outside its
// subnet) leaves with the host's address; traffic to another host's
// container keeps the container's.
func TestMasquerade(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	// An "outside" network behind host 1 (192.0.2.0/24, TEST-NET-1).
	out := nstest.NewNS(t, "out")
	nstest.Veth(t, h1.Host, "ext0", "192.0.2.1/24", out, "eth0", "192.0.2.2/24")
	if got := tcpSource(t, a, out, "192.0.2.2"); got != "192.0.2.1" {
		t.Fatalf("leaving the overlay, the outside saw %s; want the host's 192.0.2.1", got)
	}
	if got := tcpPeer(t, a, b); got != a.IP(t, "4") {
		t.Fatalf("inside the overlay, host 2 saw %s; want %s", got, a.IP(t, "4"))
	}
}
