package firewall_test

import (
	"net"
	"strings"
	"testing"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

func ipnet(t *testing.T, s string) *net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return n
}

func TestNewMasqueraderUnknownBackend(t *testing.T) {
	_, err := firewall.NewMasquerader("pf")
	if err == nil || !strings.Contains(err.Error(), `"pf"`) {
		t.Fatalf("got %v, want an error naming \"pf\"", err)
	}
}

func TestMasquerade(t *testing.T) {
	for _, backend := range []string{firewall.NFTables, firewall.IPTables} {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			mq, err := firewall.NewMasquerader(backend)
			if err != nil {
				t.Fatal(err)
			}
			outAddr := echoPeer(t, tp.out, outIP+":0")
			inAddr := echoPeer(t, tp.Host, hostCtrIP+":0")
			m1 := firewall.Masq{Network: "net1", ContainerID: "c1", IfName: "eth0", IPs: []*net.IPNet{ipnet(t, ctrIP+"/16")}}
			m2 := firewall.Masq{Network: "net1", ContainerID: "c2", IfName: "eth0", IPs: []*net.IPNet{ipnet(t, ctr2IP+"/16")}}
			do := func(f func() error) error { return inNS(t, tp.Host, f) }

			// Without masquerade the outside cannot answer.
			if got, err := seenAs(tp.ctr, outAddr); err == nil {
				t.Fatalf("before ADD: connection to outside completed, seen as %s; want failure", got)
			}
			for _, m := range []firewall.Masq{m1, m2, m1} { // m1 twice: ADD is idempotent
				if err := do(func() error { return mq.AddMasq(m) }); err != nil {
					t.Fatalf("AddMasq(%s): %v", m.ContainerID, err)
				}
			}
			for _, c := range []struct {
				name, addr, want string
				from             func() (string, error)
			}{
				{"ctr to outside is masqueraded", outAddr, hostOutIP, func() (string, error) { return seenAs(tp.ctr, outAddr) }},
				{"ctr2 to outside is masqueraded", outAddr, hostOutIP, func() (string, error) { return seenAs(tp.ctr2, outAddr) }},
				{"ctr to own subnet keeps its address", inAddr, ctrIP, func() (string, error) { return seenAs(tp.ctr, inAddr) }},
			} {
				got, err := c.from()
				if err != nil || got != c.want {
					t.Errorf("%s: got %q, %v; want %q", c.name, got, err, c.want)
				}
			}
			if err := do(func() error { return mq.CheckMasq(m1) }); err != nil {
				t.Errorf("CheckMasq after ADD: %v", err)
			}
			other := m1
			other.ContainerID = "nope"
			if err := do(func() error { return mq.CheckMasq(other) }); err == nil {
				t.Errorf("CheckMasq of an attachment never added: got nil, want error")
			}
			if backend == firewall.NFTables {
				rs := tp.Host.MustExec(t, "nft", "list", "table", "inet", firewall.TableName)
				for _, want := range []string{"ip saddr vmap @masq4", `10.88.0.5 comment "net1/c1/eth0" : jump masq-10.88.0.0-16`, "ip daddr 224.0.0.0/4 return", "masquerade"} {
					if !strings.Contains(rs, want) {
						t.Errorf("ruleset lacks %q:\n%s", want, rs)
					}
				}
			}

			// GC keeps c1 only.
			valid := map[cni.Attachment]bool{{ContainerID: "c1", IfName: "eth0"}: true}
			if err := do(func() error { return mq.GCMasq("net1", valid) }); err != nil {
				t.Fatalf("GCMasq: %v", err)
			}
			if err := do(func() error { return mq.CheckMasq(m2) }); err == nil {
				t.Errorf("CheckMasq(c2) after GC: got nil, want error")
			}
			if err := do(func() error { return mq.CheckMasq(m1) }); err != nil {
				t.Errorf("CheckMasq(c1) after GC: %v", err)
			}
			// GC of another network leaves net1 alone.
			if err := do(func() error { return mq.GCMasq("net2", nil) }); err != nil {
				t.Fatalf("GCMasq(net2): %v", err)
			}
			if err := do(func() error { return mq.CheckMasq(m1) }); err != nil {
				t.Errorf("CheckMasq(c1) after GC of net2: %v", err)
			}

			// DEL without IPs finds the attachment by its tag; then DEL
			// again, with and without IPs, succeeds.
			noIPs := m1
			noIPs.IPs = nil
			for i, m := range []firewall.Masq{noIPs, noIPs, m1, m2} {
				if err := do(func() error { return mq.DelMasq(m) }); err != nil {
					t.Fatalf("DelMasq #%d: %v", i, err)
				}
			}
			if err := do(func() error { return mq.CheckMasq(m1) }); err == nil {
				t.Errorf("CheckMasq after DEL: got nil, want error")
			}
			if backend == firewall.NFTables {
				rs := tp.Host.MustExec(t, "nft", "list", "map", "inet", firewall.TableName, "masq4")
				if strings.Contains(rs, "10.88.0.") {
					t.Errorf("masq4 still has elements after DEL:\n%s", rs)
				}
			} else {
				rs := tp.Host.MustExec(t, "iptables", "-t", "nat", "-S", "BERTH-MASQ")
				if strings.Contains(rs, "10.88.0.") {
					t.Errorf("BERTH-MASQ still has rules after DEL:\n%s", rs)
				}
			}
		})
	}
}

// DEL and GC on a namespace where nothing was ever added succeed and
// create nothing.
func TestMasqDelWithoutAdd(t *testing.T) {
	for _, backend := range []string{firewall.NFTables, firewall.IPTables} {
		t.Run(backend, func(t *testing.T) {
			tp := newTopo(t)
			mq, _ := firewall.NewMasquerader(backend)
			m := firewall.Masq{Network: "n", ContainerID: "c", IfName: "eth0", IPs: []*net.IPNet{ipnet(t, ctrIP+"/16")}}
			if err := inNS(t, tp.Host, func() error { return mq.DelMasq(m) }); err != nil {
				t.Fatalf("DelMasq: %v", err)
			}
			if err := inNS(t, tp.Host, func() error { return mq.GCMasq("n", nil) }); err != nil {
				t.Fatalf("GCMasq: %v", err)
			}
			if backend == firewall.NFTables {
				if rs := tp.Host.MustExec(t, "nft", "list", "ruleset"); strings.TrimSpace(rs) != "" {
					t.Errorf("ruleset after DEL without ADD: got %q, want empty", rs)
				}
			}
		})
	}
}
