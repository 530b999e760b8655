package overlay_test

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/link"
)

// TestAllPairs: 3 hosts × 20 containers, every container reaches every
// other (3540 echo requests, each answered), while each host holds one
// route, one neighbour and one FDB entry per other host.
func TestAllPairs(t *testing.T) {
	if testing.Short() {
		t.Skip("60 containers")
	}
	const hosts, per = 3, 20
	c := newCluster(t)
	c.startEtcd()
	raw := c.conf("ovl", 42, "10.96.0.0/16")
	var all []*nstest.Container
	for i := 0; i < hosts; i++ {
		h := c.addHost()
		list := h.list(raw)
		for j := 0; j < per; j++ {
			all = append(all, h.Run(list, fmt.Sprintf("h%dc%02d", i+1, j)))
		}
	}
	for _, h := range c.hosts {
		routes := h.Host.MustExec(t, "ip", "-o", "route", "show", "dev", "berthvx42")
		fdb := h.Host.MustExec(t, "bridge", "fdb", "show", "dev", "berthvx42")
		if n, m := countLines(routes), countLines(fdb); n != hosts-1 || m != hosts-1 {
			t.Fatalf("host %d: %d routes and %d fdb entries on berthvx42, want %d each:\n%s\n%s", h.n, n, m, hosts-1, routes, fdb)
		}
	}
	// Every container pings every other, a few sources at a time, from a
	// raw ICMP socket opened in its namespace. The kernel's ARP table is
	// one for all namespaces (gc_thresh3, 1024 entries by default, shared
	// with whatever else runs on the machine): 60 containers learning
	// every same-host neighbour at once would overflow it (ENOBUFS), so
	// the neighbour tables are flushed after each batch.
	handles := make([]*link.NS, len(all))
	for i, ctr := range all {
		h, err := link.OpenNS(ctr.NS.Path)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		handles[i] = h
	}
	const batch = 6
	failed, pairs := 0, 0
	for lo := 0; lo < len(all); lo += batch {
		hi := min(lo+batch, len(all))
		type result struct {
			from    int
			missing []string
		}
		results := make(chan result, hi-lo)
		for i := lo; i < hi; i++ {
			src := all[i]
			var conn *icmp.PacketConn
			if err := src.NS.Do(func(ns.NetNS) error {
				var err error
				conn, err = icmp.ListenPacket("ip4:icmp", src.IP(t, "4"))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			targets := map[string]bool{}
			for k, dst := range all {
				if k != i {
					targets[dst.IP(t, "4")] = true
				}
			}
			go func(i int) {
				defer conn.Close()
				results <- result{from: i, missing: pingAll(conn, i, targets)}
			}(i)
		}
		for i := lo; i < hi; i++ {
			r := <-results
			pairs += len(all) - 1
			if len(r.missing) > 0 {
				failed++
				t.Errorf("%s (%s) got no reply from %d of %d: %v", all[r.from].ID, all[r.from].IP(t, "4"), len(r.missing), len(all)-1, r.missing)
			}
		}
		for _, h := range handles {
			flushNeigh(t, h)
		}
	}
	if failed == 0 {
		t.Logf("%d containers on %d hosts: all %d ordered pairs answered", len(all), hosts, pairs)
	}
}

// flushNeigh empties a namespace's IPv4 neighbour table.
func flushNeigh(t *testing.T, h *link.NS) {
	t.Helper()
	neighs, err := h.Handle.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for i := range neighs {
		_ = h.Handle.NeighDel(&neighs[i])
	}
}

// pingAll sends one echo request to each target and returns those that did
// not answer within 5 s.
func pingAll(conn *icmp.PacketConn, id int, targets map[string]bool) []string {
	for dst := range targets {
		msg := icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: (os.Getpid() + id) & 0xffff, Seq: 1, Data: []byte("berth")}}
		b, _ := msg.Marshal(nil)
		_, _ = conn.WriteTo(b, &net.IPAddr{IP: net.ParseIP(dst)})
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	for len(targets) > 0 {
		n, peer, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		m, err := icmp.ParseMessage(1, buf[:n])
		if err != nil || m.Type != ipv4.ICMPTypeEchoReply {
			continue
		}
		delete(targets, peer.(*net.IPAddr).IP.String())
	}
	var missing []string
	for dst := range targets {
		missing = append(missing, dst)
	}
	return missing
}

func countLines(s string) int {
	n := 0
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			n++
		}
	}
	return n
}
