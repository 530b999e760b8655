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
		if _, found, err := elementComment(keyed{m4, x.To4()}); err != nil || found {
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
			got, found, err := elementComment(keyed{m4, tt.key.To4()})
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
		if got, found, _ := elementComment(keyed{m4, x.To4()}); !found || got != "n/a/eth0" {
			t.Fatalf("after another attachment's DEL: got %q, found %v; want n/a/eth0", got, found)
		}
		if err := (nftMasq{}).DelMasq(ms); err != nil {
			t.Fatal(err)
		}
		if _, found, _ := elementComment(keyed{m4, x.To4()}); found {
			t.Fatal("the owner's DEL left its element")
		}
	})
}
