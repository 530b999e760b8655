package overlay

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

func TestHostSubnets(t *testing.T) {
	for _, tc := range []struct {
		subnet  string
		hostLen int
		i       int
		want    string
		count   int
	}{
		{"10.96.0.0/16", 24, 0, "10.96.0.0/24", 256},
		{"10.96.0.0/16", 24, 255, "10.96.255.0/24", 256},
		{"10.96.0.0/16", 26, 5, "10.96.1.64/26", 1024},
		{"10.0.0.0/8", 24, 300, "10.1.44.0/24", 1 << 16}, // capped walk
		{"192.168.4.0/22", 24, 3, "192.168.7.0/24", 4},
	} {
		n := &Network{Subnet: netip.MustParsePrefix(tc.subnet), HostSubnetLen: tc.hostLen}
		if got := n.HostSubnet(tc.i).String(); got != tc.want {
			t.Errorf("%s /%d [%d] = %s, want %s", tc.subnet, tc.hostLen, tc.i, got, tc.want)
		}
		if got := n.HostSubnets(); got != tc.count {
			t.Errorf("%s /%d: %d subnets, want %d", tc.subnet, tc.hostLen, got, tc.count)
		}
	}
	if g := Gateway(netip.MustParsePrefix("10.96.7.0/24")); g.String() != "10.96.7.1" {
		t.Errorf("gateway %s", g)
	}
}

func TestKeys(t *testing.T) {
	n := &Network{VNI: 42, Subnet: netip.MustParsePrefix("10.96.0.0/16"), HostSubnetLen: 24, Store: Store{Prefix: "/x/"}}
	p := netip.MustParsePrefix("10.96.3.0/24")
	k := n.key(p)
	if k != "/x/overlay/42/subnets/10.96.3.0-24" {
		t.Fatalf("key %s", k)
	}
	if got, ok := n.subnetOfKey(k); !ok || got != p {
		t.Fatalf("subnetOfKey(%s) = %v %v", k, got, ok)
	}
	for _, bad := range []string{
		"/x/overlay/42/subnets/10.97.3.0-24", // outside the overlay
		"/x/overlay/42/subnets/10.96.3.0-25", // not a host subnet
		"/x/overlay/43/subnets/10.96.3.0-24", // another VNI
		"/x/overlay/42/subnets/junk",
	} {
		if _, ok := n.subnetOfKey(bad); ok {
			t.Errorf("subnetOfKey(%s) accepted", bad)
		}
	}
	if def := (&Network{VNI: 7}).keyPrefix(); def != "/berth/overlay/7/subnets/" {
		t.Errorf("default prefix %s", def)
	}
}

func TestHostIDAndLeaseFile(t *testing.T) {
	dir := t.TempDir()
	id1, err := HostID(filepath.Join(dir, "host-id"))
	if err != nil || len(id1) != 32 {
		t.Fatalf("HostID: %q %v", id1, err)
	}
	id2, err := HostID(filepath.Join(dir, "host-id"))
	if err != nil || id2 != id1 {
		t.Fatalf("HostID again: %q %v, want %q", id2, err, id1)
	}
	path := filepath.Join(dir, "leases", "42.json")
	if l, err := ReadLease(path); l != nil || err != nil {
		t.Fatalf("missing lease file: %v %v", l, err)
	}
	want := &Lease{Subnet: netip.MustParsePrefix("10.96.3.0/24"), Record: Record{HostID: id1, Underlay: netip.MustParseAddr("192.0.2.1"), VTEPMAC: "02:00:00:00:00:01"}, LeaseID: 7}
	if err := WriteLease(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadLease(path)
	if err != nil || *got != *want {
		t.Fatalf("lease round trip: %+v %v", got, err)
	}
	if err := os.WriteFile(path, []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadLease(path); err == nil {
		t.Fatal("a corrupt lease file was accepted")
	}
}

func TestClaimLocal(t *testing.T) {
	n := &Network{Subnet: netip.MustParsePrefix("10.98.0.0/16"), HostSubnetLen: 24}
	if l := ClaimLocal(n, nil, Record{}); l.Subnet.String() != "10.98.0.0/24" {
		t.Fatalf("first claim %s", l.Subnet)
	}
	prev := &Lease{Subnet: netip.MustParsePrefix("10.98.9.0/24")}
	if l := ClaimLocal(n, prev, Record{}); l.Subnet != prev.Subnet {
		t.Fatalf("kept claim %s", l.Subnet)
	}
	// The overlay's subnet changed: the old lease does not fit.
	prev = &Lease{Subnet: netip.MustParsePrefix("10.99.9.0/24")}
	if l := ClaimLocal(n, prev, Record{}); l.Subnet.String() != "10.98.0.0/24" {
		t.Fatalf("claim after a subnet change %s", l.Subnet)
	}
}
