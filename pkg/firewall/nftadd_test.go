package firewall

import (
	"net"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// TestAddDeletesNothing: once a network has an attachment, another
// attachment's ADD (masquerade, published port, isolation) deletes no
// element, flushes no chain and re-adds no existing chain: each of those
// makes the transaction's objects wait for an RCU grace period, which the
// process pays when it closes its netfilter socket. Watched with an nftables monitor; a table created and
// deleted afterwards marks the end of the ADDs' events. (Failed before
// addOwned and chainHolds: upsert's DELSETELEM, the chains' DELRULE and
// NEWCHAIN updates.)
func TestAddDeletesNothing(t *testing.T) {
	tests := []struct {
		name string
		add  func(Masq, PortMap, Isolation) error
	}{
		{"masquerade", func(m Masq, _ PortMap, _ Isolation) error { return (nftMasq{}).AddMasq(m) }},
		{"published port", func(_ Masq, p PortMap, _ Isolation) error { return (nftPorts{}).AddPorts(p) }},
		{"published port, same container on another network", func(_ Masq, p PortMap, _ Isolation) error {
			bn2 := func(id string, ip byte, port int) PortMap {
				return PortMap{Network: "bn2", ContainerID: id, IfName: "eth1", SNAT: true,
					ContainerIPs: []*net.IPNet{{IP: net.IPv4(10, 8, 0, ip), Mask: net.CIDRMask(16, 32)}},
					Mappings:     []PortMapping{{HostPort: port, ContainerPort: 80, Protocol: "tcp"}}}
			}
			if p.ContainerID == "c0" {
				// Network bn2 has an attachment already.
				if err := (nftPorts{}).AddPorts(bn2("c9", 9, 29999)); err != nil {
					return err
				}
				return (nftPorts{}).AddPorts(p)
			}
			// The second ADD: c0 joins bn2 with the same mapping
			// (Podman), so its element waits in standby.
			return (nftPorts{}).AddPorts(bn2("c0", 2, 20000))
		}},
		{"isolation", func(_ Masq, _ PortMap, a Isolation) error { return (nftIso{}).AddIsolation(a) }},
		{"isolated", func(_ Masq, _ PortMap, a Isolation) error {
			a.Policy, a.HostVeth = PolicyIsolated, "veth"+a.ContainerID
			return (nftIso{}).AddIsolation(a)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inNS(t, func() {
				if err := tt.add(benchAttachment(0)); err != nil {
					t.Fatal(err)
				}
				c, err := newConn()
				if err != nil {
					t.Fatal(err)
				}
				mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(1024))
				defer mon.Close()
				events, err := c.AddMonitor(mon)
				if err != nil {
					t.Fatal(err)
				}
				if err := tt.add(benchAttachment(1)); err != nil {
					t.Fatal(err)
				}
				marker := &nftables.Table{Name: "end-marker", Family: nftables.TableFamilyINet}
				c.AddTable(marker)
				c.DelTable(marker)
				if err := c.Flush(); err != nil {
					t.Fatal(err)
				}
				timeout := time.After(10 * time.Second)
				for {
					select {
					case ev := <-events:
						if ev.Error != nil {
							t.Fatal(ev.Error)
						}
						if tab, ok := ev.Data.(*nftables.Table); ok && ev.Type == nftables.MonitorEventTypeDelTable && tab.Name == marker.Name {
							return
						}
						switch ev.Type {
						case nftables.MonitorEventTypeDelRule, nftables.MonitorEventTypeDelSetElem, nftables.MonitorEventTypeDelChain,
							nftables.MonitorEventTypeDelSet, nftables.MonitorEventTypeDelTable:
							t.Errorf("ADD of a second attachment deleted something: event %d %+v", ev.Type, ev.Data)
						case nftables.MonitorEventTypeNewChain:
							// Every chain is there already: re-adding one is
							// an update that waits for a grace period too.
							t.Errorf("ADD of a second attachment re-added a chain: %+v", ev.Data)
						}
					case <-timeout:
						t.Fatal("no end marker event")
					}
				}
			})
		})
	}
}

// TestAddTakesOverLeftover: an element left under the same key by an
// attachment that never got its DEL (same data, another tag) is taken over
// by the new attachment's ADD; one of a live attachment with other data
// (another container's published port) makes the ADD fail and stays.
func TestAddTakesOverLeftover(t *testing.T) {
	inNS(t, func() {
		m0, p0, i0 := benchAttachment(0)
		if err := (nftMasq{}).AddMasq(m0); err != nil {
			t.Fatal(err)
		}
		if err := (nftIso{}).AddIsolation(i0); err != nil {
			t.Fatal(err)
		}
		if err := (nftPorts{}).AddPorts(p0); err != nil {
			t.Fatal(err)
		}
		// Attachment 1 gets attachment 0's address (0 lost its DEL).
		m1, _, i1 := benchAttachment(1)
		m1.IPs, i1.IPs = m0.IPs, i0.IPs
		if err := (nftMasq{}).AddMasq(m1); err != nil {
			t.Fatal(err)
		}
		if err := (nftIso{}).AddIsolation(i1); err != nil {
			t.Fatal(err)
		}
		ip := m0.IPs[0].IP.To4()
		for _, k := range []keyed{{masqMap(nftTable(), v4), ip}, {isoAllowSet(nftTable(), v4), ip}} {
			got, found, err := elementComment(nil, k)
			if want := tag(m1.Network, m1.ContainerID, m1.IfName); err != nil || !found || got != want {
				t.Errorf("%s: comment %q, found %v, %v; want %q", k.set.Name, got, found, err, want)
			}
		}
		// Attachment 2 asks for attachment 0's host port for another address.
		_, p2, _ := benchAttachment(2)
		p2.Mappings = p0.Mappings
		if err := (nftPorts{}).AddPorts(p2); err == nil {
			t.Fatal("publishing a host port held by another attachment: no error")
		}
		e, err := elemsOf(targets(p0)[0], "")
		if err != nil {
			t.Fatal(err)
		}
		got, found, err := elementComment(nil, keyed{portsMap(nftTable(), v4, false), e.dnat.Key})
		if want := tag(p0.Network, p0.ContainerID, p0.IfName); err != nil || !found || got != want {
			t.Errorf("host port: comment %q, found %v, %v; want %q kept", got, found, err, want)
		}
	})
}

// TestChainHolds: a missing chain never "holds" n rules, n = 0 included. A
// rules dump filtered by a missing chain is empty, so an empty reference
// chain and a missing one looked alike: the first ADD on a network skipped
// creating it, its jump failed the transaction, and the retry came after
// the aborted transaction's grace period. (Failed before: true for the
// missing chain.)
func TestChainHolds(t *testing.T) {
	inNS(t, func() {
		c, err := newConn()
		if err != nil {
			t.Fatal(err)
		}
		tab := nftTable()
		c.AddTable(tab)
		c.AddChain(&nftables.Chain{Name: "empty", Table: tab})
		one := c.AddChain(&nftables.Chain{Name: "one", Table: tab})
		c.AddRule(&nftables.Rule{Table: tab, Chain: one, Exprs: []expr.Any{&expr.Counter{}}})
		if err := c.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			chain string
			n     int
			want  bool
		}{
			{"missing", 0, false},
			{"missing", 1, false},
			{"empty", 0, true},
			{"empty", 1, false},
			{"one", 1, true},
			{"one", 0, false},
		} {
			if got := chainHolds(c, tab, tt.chain, tt.n); got != tt.want {
				t.Errorf("chainHolds(%s, %d) = %v, want %v", tt.chain, tt.n, got, tt.want)
			}
		}
	})
}
