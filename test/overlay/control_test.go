package overlay_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/link"
)

// TestVNIIsolation: two overlays on the same hosts do not reach each
// other; each still works.
func TestVNIIsolation(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	red, blue := c.conf("red", 42, "10.96.0.0/16"), c.conf("blue", 43, "10.97.0.0/16")
	a := h1.Run(h1.list(red), "red1")
	b := h2.Run(h2.list(red), "red2")
	x := h1.Run(h1.list(blue), "blue1")
	y := h2.Run(h2.list(blue), "blue2")
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, x.NS, y.IP(t, "4"))
	nstest.NoPing(t, a.NS, y.IP(t, "4"))
	nstest.NoPing(t, x.NS, b.IP(t, "4"))
	// Nor on one host, bridge to bridge.
	nstest.NoPing(t, a.NS, x.IP(t, "4"))
	// Neither VXLAN device knows the other overlay's hosts.
	if r := h1.Host.MustExec(t, "ip", "route", "show", "dev", "berthvx42"); strings.Contains(r, "10.97.") {
		t.Fatalf("vni 42 routes the other overlay's subnet:\n%s", r)
	}
}

// TestLateJoiner: a host that joins after containers exist elsewhere is
// reachable from them within 2 s of its first ADD, with no ADD on the old
// host; the route appears on an event, waited for, not polled.
func TestLateJoiner(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1 := c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	h2 := c.addHost()
	start := time.Now()
	b := h2.Run(h2.list(raw), "bravo")
	took := h1.waitRoute(t, "berthvx42", subnetOf(b.IP(t, "4")), true, 2*time.Second, start)
	t.Logf("late joiner's subnet routed on the old host %v after its ADD began", took)
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, b.NS, a.IP(t, "4"))
}

// TestEtcdDown: with etcd stopped, traffic goes on, an ADD on a host that
// holds its lease works, an ADD that needs etcd fails with code 11 naming
// the endpoint, DEL works; when etcd is back, the host that failed joins
// and everything reconciles without restarting anything.
// reconnectBound is how long a daemon may take to get through to an etcd
// that came back (see TestEtcdDown).
const reconnectBound = 10 * time.Second

func TestEtcdDown(t *testing.T) {
	c := newCluster(t)
	e := c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	pid1 := h1.daemonPID()
	e.stop(t)

	nstest.Ping(t, a.NS, b.IP(t, "4"))
	a2 := h1.Run(h1.list(raw), "alpha2")
	nstest.Ping(t, a2.NS, b.IP(t, "4"))
	nstest.Ping(t, b.NS, a2.IP(t, "4"))
	if err := h1.RT.Del(context.Background(), h1.list(raw), a2.RC); err != nil {
		t.Fatalf("DEL with etcd down: %v", err)
	}
	h3 := c.addHost()
	_, err := h3.tryRun(h3.list(raw), "charlie")
	if cniCode(err) != 11 || !strings.Contains(err.Error(), e.url) {
		t.Fatalf("ADD needing etcd while it is down: %v; want code 11 naming %s", err, e.url)
	}
	// Give the keep-alives time to fail (the daemon must not tear
	// anything down meanwhile); traffic still flows.
	time.Sleep(2 * time.Second)
	nstest.Ping(t, a.NS, b.IP(t, "4"))

	e.start(t)
	start := time.Now()
	ch := h3.Run(h3.list(raw), "charlie")
	// Both old hosts route the new one once their daemons are through
	// to etcd again (each on its own retry schedule).
	h1.waitRoute(t, "berthvx42", subnetOf(ch.IP(t, "4")), true, reconnectBound, start)
	h2.waitRoute(t, "berthvx42", subnetOf(ch.IP(t, "4")), true, reconnectBound, start)
	nstest.Ping(t, a.NS, ch.IP(t, "4"))
	nstest.Ping(t, ch.NS, b.IP(t, "4"))
	if h1.daemonPID() != pid1 {
		t.Fatalf("host 1's daemon changed (%d -> %d): it must ride out etcd's absence", pid1, h1.daemonPID())
	}
}

// TestDaemonKilled: SIGKILL of a host's daemon leaves traffic alone; the
// next ADD starts a new one, which follows etcd again (a later host is
// routed) and keeps the host's subnet.
func TestDaemonKilled(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	old := h1.daemonPID()
	h1.killDaemon(t)
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	a2 := h1.Run(h1.list(raw), "alpha2")
	if pid := h1.daemonPID(); pid == 0 || pid == old {
		t.Fatalf("daemon after the next ADD: pid %d (killed: %d)", pid, old)
	}
	if subnetOf(a2.IP(t, "4")) != subnetOf(a.IP(t, "4")) {
		t.Fatalf("host 1 changed subnet across a daemon restart: %s then %s", a.IP(t, "4"), a2.IP(t, "4"))
	}
	h3 := c.addHost()
	start := time.Now()
	ch := h3.Run(h3.list(raw), "charlie")
	h1.waitRoute(t, "berthvx42", subnetOf(ch.IP(t, "4")), true, 2*time.Second, start)
	nstest.Ping(t, a.NS, ch.IP(t, "4"))
}

// TestVTEPChange: a host whose VXLAN device is made anew (a reboot: new
// MAC) is reached again at once: the old hosts replace its neighbour and
// FDB entries, without an ADD there.
func TestVTEPChange(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	oldMAC := strings.TrimSpace(h2.Host.MustExec(t, "cat", "/sys/class/net/berthvx42/address"))

	// "Reboot" host 2: its daemon and VXLAN device go.
	h2.killDaemon(t)
	h2.Host.MustExec(t, "ip", "link", "del", "berthvx42")
	b2 := h2.Run(h2.list(raw), "bravo2")
	newMAC := strings.TrimSpace(h2.Host.MustExec(t, "cat", "/sys/class/net/berthvx42/address"))
	if newMAC == oldMAC {
		t.Skip("the kernel gave the new device the same MAC")
	}
	h1.waitNeigh(t, func() bool {
		fdb := h1.Host.MustExec(t, "bridge", "fdb", "show", "dev", "berthvx42")
		return strings.Contains(fdb, newMAC) && !strings.Contains(fdb, oldMAC)
	}, 2*time.Second)
	if n := h1.Host.MustExec(t, "ip", "neigh", "show", "dev", "berthvx42"); !strings.Contains(n, newMAC) {
		t.Fatalf("host 1's neighbour entries still point at the old VTEP:\n%s", n)
	}
	nstest.Ping(t, a.NS, b2.IP(t, "4"))
	nstest.Ping(t, a.NS, b.IP(t, "4"))
}

// TestLeaseExpiry: a host that dies (its daemon stops renewing) loses its
// subnet when the lease's TTL runs out: the other hosts drop its route,
// neighbour and FDB entry, and a new host reclaims the subnet and is
// reached with its own VTEP.
func TestLeaseExpiry(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	ttl := func(p map[string]any) { p["leaseTTL"] = 5 }
	raw := c.conf("ovl", 42, "10.96.0.0/16", ttl)
	h1, h2 := c.addHost(), c.addHost()
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	dead := subnetOf(b.IP(t, "4"))
	deadMAC := strings.TrimSpace(h2.Host.MustExec(t, "cat", "/sys/class/net/berthvx42/address"))
	// Host 2 dies: no more renewals, no more traffic from it.
	h2.killDaemon(t)
	h2.Host.MustExec(t, "ip", "link", "set", "ul0", "down")
	took := h1.waitRoute(t, "berthvx42", dead, false, 15*time.Second, time.Now())
	t.Logf("dead host's route gone %v after it died (lease TTL 5 s)", took)
	if fdb := h1.Host.MustExec(t, "bridge", "fdb", "show", "dev", "berthvx42"); strings.Contains(fdb, deadMAC) {
		t.Fatalf("the dead host's FDB entry stayed:\n%s", fdb)
	}
	if n := h1.Host.MustExec(t, "ip", "neigh", "show", "dev", "berthvx42"); strings.Contains(n, deadMAC) {
		t.Fatalf("the dead host's neighbour entry stayed:\n%s", n)
	}
	h3 := c.addHost()
	ch := h3.Run(h3.list(raw), "charlie")
	if got := subnetOf(ch.IP(t, "4")); got != dead {
		t.Fatalf("new host got %s; want the expired %s back", got, dead)
	}
	nstest.Ping(t, a.NS, ch.IP(t, "4"))

	// Host 2 comes back (its containers gone, as after a reboot): its
	// lease file names a subnet host 3 holds now, so its next ADD claims
	// again and gets another one; everyone reaches everyone.
	if err := h2.RT.Del(context.Background(), h2.list(raw), b.RC); err != nil {
		t.Fatalf("DEL on the dead host: %v", err)
	}
	h2.Host.MustExec(t, "ip", "link", "set", "ul0", "up")
	b2 := h2.Run(h2.list(raw), "bravo2")
	if got := subnetOf(b2.IP(t, "4")); got == dead || got == subnetOf(a.IP(t, "4")) {
		t.Fatalf("returning host got %s, held by another host", got)
	}
	start := time.Now()
	h1.waitRoute(t, "berthvx42", subnetOf(b2.IP(t, "4")), true, 2*time.Second, start)
	nstest.Ping(t, a.NS, b2.IP(t, "4"))
	nstest.Ping(t, b2.NS, ch.IP(t, "4"))
	if addrs := h2.Host.MustExec(t, "ip", "-4", "-o", "addr", "show", "dev", "berthbr42"); strings.Contains(addrs, strings.TrimSuffix(dead, "0/24")+"1/") {
		t.Fatalf("the returning host kept its old gateway:\n%s", addrs)
	}
}

// TestLocalStore: overlay-local.conflist, one host, no etcd and no daemon:
// containers on the host's subnet reach each other and the gateway.
func TestLocalStore(t *testing.T) {
	c := newCluster(t)
	h := c.addHost()
	// No underlay in the example: the default route's interface.
	h.Host.MustExec(t, "ip", "route", "add", "default", "via", underlayNet+"254", "dev", "ul0")
	list := h.Conflist(nstest.Example(t, "overlay-local.conflist"))
	a := h.Run(list, "alpha")
	if local := h.Host.MustExec(t, "ip", "-d", "link", "show", "berthvx4201"); !strings.Contains(local, "local "+h.addr) {
		t.Fatalf("vxlan not sourced from the default route's interface:\n%s", local)
	}
	// The underlay given as an address.
	other := h.Conflist(c.conf("other", 4202, "10.99.0.0/16", func(p map[string]any) { p["underlay"] = h.addr }))
	o := h.Run(other, "other")
	nstest.Ping(t, o.NS, o.Res.IPs[0].Gateway.String())
	b := h.Run(list, "bravo")
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, a.NS, a.Res.IPs[0].Gateway.String())
	if pid := h.daemonPID(); pid != 0 {
		t.Fatalf("a daemon (pid %d) runs for the local store", pid)
	}
	if err := h.RT.Check(context.Background(), list, a.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := h.RT.Status(context.Background(), list); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
}

// TestWatchCompacted: a host cut off from etcd while others join, and
// etcd compacted past its watch meanwhile, resyncs from a fresh snapshot
// when it gets through again (its watch cannot resume) and routes the host
// that joined.
func TestWatchCompacted(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	h2.Run(h2.list(raw), "bravo")

	// Host 1 loses etcd (connections refused at once, not stalled), not
	// the underlay.
	h1.Host.MustExec(t, "nft", "add", "table", "inet", "cutoff")
	h1.Host.MustExec(t, "nft", "add", "chain", "inet", "cutoff", "out", "{ type filter hook output priority 0 ; }")
	h1.Host.MustExec(t, "nft", "add", "rule", "inet", "cutoff", "out", "tcp", "dport", "2379", "reject", "with", "tcp", "reset")
	h1.Host.MustExec(t, "nft", "add", "chain", "inet", "cutoff", "in", "{ type filter hook input priority 0 ; }")
	h1.Host.MustExec(t, "nft", "add", "rule", "inet", "cutoff", "in", "tcp", "sport", "2379", "drop")
	// And the connections it has now are gone (SOCK_DESTROY), so its
	// client notices at once and keeps failing to reconnect.
	h1.Host.MustExec(t, "ss", "-K", "dst", underlayNet+"254", "dport", "=", ":2379")
	h3 := c.addHost()
	ch := h3.Run(h3.list(raw), "charlie")
	// Unrelated writes move the revision past host 3's, so the compaction
	// takes host 3's event from the history host 1 would resume at.
	for i := 0; i < 3; i++ {
		if out, err := c.ul.Exec("curl", "-sSf", "-m", "10", "-X", "POST", c.etcd.url+"/v3/kv/put", "-d", `{"key":"dW5yZWxhdGVk","value":"eA=="}`); err != nil {
			t.Fatalf("put: %v\n%s", err, out)
		}
	}
	rev := c.revision(t)
	if out, err := c.ul.Exec("curl", "-sSf", "-m", "10", "-X", "POST", c.etcd.url+"/v3/kv/compaction",
		"-d", fmt.Sprintf(`{"revision":"%d","physical":true}`, rev)); err != nil {
		t.Fatalf("compaction: %v\n%s", err, out)
	}
	if r := h1.Host.MustExec(t, "ip", "route", "show", "dev", "berthvx42"); strings.Contains(r, subnetOf(ch.IP(t, "4"))) {
		t.Fatalf("host 1 routed host 3 while cut off from etcd:\n%s", r)
	}
	h1.Host.MustExec(t, "nft", "delete", "table", "inet", "cutoff")
	h1.waitRoute(t, "berthvx42", subnetOf(ch.IP(t, "4")), true, reconnectBound, time.Now())
	nstest.Ping(t, a.NS, ch.IP(t, "4"))
	log, _ := os.ReadFile(filepath.Join(h1.DataDir, "vxlan-overlay", "berth-overlayd.log"))
	if !strings.Contains(string(log), "resyncing from a snapshot") {
		t.Logf("host 1's daemon log:\n%s", log)
		t.Fatal("host 1 routed host 3 without resyncing: the watch did not see the compaction")
	}
}

// TestUnderlayChange: a host whose underlay address changes gets a VXLAN
// device sourced from the new one at its next ADD; the other hosts send
// to the new address at once, and its peers are programmed on the new
// device.
func TestUnderlayChange(t *testing.T) {
	c := newCluster(t)
	c.startEtcd()
	h1, h2 := c.addHost(), c.addHost()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	a := h1.Run(h1.list(raw), "alpha")
	b := h2.Run(h2.list(raw), "bravo")
	nstest.Ping(t, a.NS, b.IP(t, "4"))

	newAddr := underlayNet + "12"
	h2.Host.MustExec(t, "ip", "addr", "del", h2.addr+"/24", "dev", "ul0")
	h2.Host.MustExec(t, "ip", "addr", "add", newAddr+"/24", "dev", "ul0")
	b2 := h2.Run(h2.list(raw), "bravo2")
	h1.waitNeigh(t, func() bool {
		return strings.Contains(h1.Host.MustExec(t, "bridge", "fdb", "show", "dev", "berthvx42"), "dst "+newAddr)
	}, 2*time.Second)
	nstest.Ping(t, a.NS, b2.IP(t, "4"))
	nstest.Ping(t, a.NS, b.IP(t, "4"))
	nstest.Ping(t, b2.NS, a.IP(t, "4"))
}

// TestRepeatedAddAndForeignVeth: the overlay keeps the bridge's
// guarantees (issue 8): a repeated ADD of a live attachment fails with 101
// and leaves its address, veth and traffic alone, and a link of someone
// else's under the derived host veth name is never deleted.
func TestRepeatedAddAndForeignVeth(t *testing.T) {
	c := newCluster(t)
	h := c.addHost()
	h.Host.MustExec(t, "ip", "route", "add", "default", "via", underlayNet+"254", "dev", "ul0")
	list := h.Conflist(nstest.Example(t, "overlay-local.conflist"))

	// A foreign veth holding the first derived name of "bravo"/eth0.
	foreign := link.HostVethName("bravo", "eth0")
	h.Host.MustExec(t, "ip", "link", "add", foreign, "type", "veth", "peer", "name", nstest.UniqueName("fp"))

	a := h.Run(list, "alpha")
	if _, err := h.RT.Add(context.Background(), list, a.RC); cniCode(err) != 101 {
		t.Fatalf("repeated ADD: got %v, want code 101", err)
	}
	b := h.Run(list, "bravo")
	if a.IP(t, "4") == b.IP(t, "4") {
		t.Fatalf("after a repeated ADD the next container got the first's address %s", a.IP(t, "4"))
	}
	nstest.Ping(t, b.NS, a.IP(t, "4"))
	if err := h.RT.Check(context.Background(), list, a.RC); err != nil {
		t.Fatalf("CHECK of the first after a repeated ADD: %v", err)
	}
	if err := h.RT.Del(context.Background(), list, b.RC); err != nil {
		t.Fatal(err)
	}
	if out := h.Host.MustExec(t, "ip", "-o", "link", "show", foreign); !strings.Contains(out, foreign) {
		t.Fatalf("the foreign link %s went with bravo's ADD/DEL", foreign)
	}
}
