package firewall

import (
	"net"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// inNS runs f in a private network namespace of the test.
func inNS(t *testing.T, f func()) {
	t.Helper()
	n := nstest.NewNS(t, "fw")
	if err := n.Do(func(ns.NetNS) error { f(); return nil }); err != nil {
		t.Fatal(err)
	}
}

func TestElementComment(t *testing.T) {
	nstest.RequireRoot(t)
	inNS(t, func() {
		m4 := masqMap(nftTable(), v4)
		x := net.IPv4(10, 1, 0, 5)
		if _, found, err := elementComment(nil, keyed{m4, x.To4()}); err != nil || found {
			t.Fatalf("without the table: found %v, %v; want not found, nil", found, err)
		}
		ms := Masq{Network: "n", ContainerID: "a", IfName: "eth0", IPs: []*net.IPNet{{IP: x, Mask: net.CIDRMask(24, 32)}}}
		if err := (nftMasq{}).AddMasq(ms); err != nil {
			t.Fatal(err)
		}
		tests := []struct {
			key       net.IP
			wantFound bool
			want      string
		}{
			{x, true, "n/a/eth0"},
			{net.IPv4(10, 1, 0, 6), false, ""},
		}
		for _, tt := range tests {
			got, found, err := elementComment(nil, keyed{m4, tt.key.To4()})
			if err != nil || found != tt.wantFound || got != tt.want {
				t.Errorf("element %s: got %q, found %v, %v; want %q, %v", tt.key, got, found, err, tt.want, tt.wantFound)
			}
		}
		// A DEL of another attachment naming the same address leaves it.
		stale := ms
		stale.ContainerID = "b"
		if err := (nftMasq{}).DelMasq(stale); err != nil {
			t.Fatal(err)
		}
		if got, found, _ := elementComment(nil, keyed{m4, x.To4()}); !found || got != "n/a/eth0" {
			t.Fatalf("after another attachment's DEL: got %q, found %v; want n/a/eth0", got, found)
		}
		if err := (nftMasq{}).DelMasq(ms); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := elementComment(nil, keyed{m4, x.To4()}); found {
			t.Fatal("the owner's DEL left its element")
		}
	})
}

// TestChainUse: the count of a chain's rules and of the jumps to it, which
// DEL reads to skip a teardown attempt while the chain is referenced.
func TestChainUse(t *testing.T) {
	nstest.RequireRoot(t)
	inNS(t, func() {
		tab := nftTable()
		if _, found, err := chainUse(nil, tab, "masq-10.1.0.0-24"); err != nil || found {
			t.Fatalf("without the table: found %v, %v; want not found, nil", found, err)
		}
		var ms []Masq
		for i := 0; i < 2; i++ {
			ms = append(ms, Masq{Network: "n", ContainerID: string(rune('a' + i)), IfName: "eth0",
				IPs: []*net.IPNet{{IP: net.IPv4(10, 1, 0, byte(5+i)), Mask: net.CIDRMask(24, 32)}}})
			if err := (nftMasq{}).AddMasq(ms[i]); err != nil {
				t.Fatal(err)
			}
		}
		tests := []struct {
			name string
			del  int // attachments deleted before the look
			want uint32
		}{
			{"two jumps", 0, masqChainRules + 2},
			{"one jump", 1, masqChainRules + 1},
		}
		for _, tt := range tests {
			for i := 0; i < tt.del; i++ {
				if err := (nftMasq{}).DelMasq(ms[i]); err != nil {
					t.Fatal(err)
				}
			}
			use, found, err := chainUse(nil, tab, "masq-10.1.0.0-24")
			if err != nil || !found || use != tt.want {
				t.Errorf("%s: use %d, found %v, %v; want %d", tt.name, use, found, err, tt.want)
			}
		}
		// The last DEL tears the chain down.
		if err := (nftMasq{}).DelMasq(ms[1]); err != nil {
			t.Fatal(err)
		}
		if _, found, err := chainUse(nil, tab, "masq-10.1.0.0-24"); err != nil || found {
			t.Errorf("after the last DEL: found %v, %v; want the chain gone", found, err)
		}
	})
}
