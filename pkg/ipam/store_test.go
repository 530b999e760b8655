package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/pkg/cni"
)

func openStore(t testing.TB, dataDir string) *Store {
	t.Helper()
	s, err := Open(dataDir, "net1", true)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustRange(t testing.TB, js string) RangeSet {
	t.Helper()
	c, err := Parse(conf(js), "")
	if err != nil {
		t.Fatal(err)
	}
	return c.RangeSets[0]
}

// allocN allocates n addresses from set in one locked session each, like n
// plugin processes, and returns them.
func allocN(t testing.TB, dataDir string, set RangeSet, n int) []string {
	t.Helper()
	var out []string
	for i := 0; i < n; i++ {
		s := openStore(t, dataDir)
		a, _, err := Allocate(s, set, 0, Owner{ID: fmt.Sprintf("c%d", len(out)), IfName: "eth0"})
		if cerr := s.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, a.String())
	}
	return out
}

func TestAllocateRoundRobin(t *testing.T) {
	tests := []struct {
		name  string
		rng   string
		n     int
		want  string
		full  string // exhaustion message after n, "" when not exhausted
		freed []string
		then  string // next allocations after freeing
	}{
		{"skips gateway, exhausts /30", `"subnet":"10.1.0.0/30"`, 1, "10.1.0.2", "host-local: no free address in 10.1.0.0/30 (range 10.1.0.1-10.1.0.2)", nil, ""},
		{"/31 uses both", `"subnet":"10.1.0.0/31"`, 2, "10.1.0.0 10.1.0.1", "no free address in 10.1.0.0/31", nil, ""},
		{"/32 single", `"subnet":"10.1.0.9/32"`, 1, "10.1.0.9", "no free address in 10.1.0.9/32 (range 10.1.0.9-10.1.0.9)", nil, ""},
		{"custom gateway inside range skipped", `"ranges":[[{"subnet":"10.1.0.0/29","gateway":"10.1.0.3"}]]`, 5, "10.1.0.1 10.1.0.2 10.1.0.4 10.1.0.5 10.1.0.6", "no free address", nil, ""},
		{"round robin does not reuse at once", `"subnet":"10.1.0.0/29"`, 3, "10.1.0.2 10.1.0.3 10.1.0.4", "", []string{"10.1.0.2"}, "10.1.0.5 10.1.0.6 10.1.0.2"},
		{"multi-range set continues in next range",
			`"ranges":[[{"subnet":"10.1.0.0/24","rangeStart":"10.1.0.10","rangeEnd":"10.1.0.11"},{"subnet":"10.2.0.0/24","rangeStart":"10.2.0.5","rangeEnd":"10.2.0.5"}]]`,
			3, "10.1.0.10 10.1.0.11 10.2.0.5", "no free address in 10.1.0.0/24 (range 10.1.0.10-10.1.0.11), 10.2.0.0/24 (range 10.2.0.5-10.2.0.5)", nil, ""},
		{"v6", `"ranges":[[{"subnet":"fd00::/126"}]]`, 3, "fd00::2 fd00::3", "", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			set := mustRange(t, tt.rng)
			if tt.name == "v6" { // /126: ::1 is the gateway, ::2 and ::3 free
				tt.n = 2
			}
			got := strings.Join(allocN(t, dir, set, tt.n), " ")
			if got != tt.want {
				t.Fatalf("got %s, want %s", got, tt.want)
			}
			if tt.full != "" {
				s := openStore(t, dir)
				_, _, err := Allocate(s, set, 0, Owner{ID: "late", IfName: "eth0"})
				s.Close()
				var ce *types.Error
				if !errors.As(err, &ce) || ce.Code != cni.CodeAddressExhausted || !strings.Contains(ce.Msg, tt.full) {
					t.Fatalf("got %v, want code 100 containing %q", err, tt.full)
				}
			}
			if tt.freed != nil {
				s := openStore(t, dir)
				for _, f := range tt.freed {
					a := netip.MustParseAddr(f)
					o, _ := s.Owner(a)
					if err := s.Release(a, o); err != nil {
						t.Fatal(err)
					}
				}
				s.Close()
				if got := strings.Join(allocN(t, dir, set, 3), " "); got != tt.then {
					t.Fatalf("after freeing: got %s, want %s", got, tt.then)
				}
			}
		})
	}
}

// TestReferenceFormat checks the files berth writes byte for byte against
// the reference host-local's layout.
func TestReferenceFormat(t *testing.T) {
	dir := t.TempDir()
	set := mustRange(t, `"subnet":"10.1.0.0/24"`)
	s := openStore(t, dir)
	if _, _, err := Allocate(s, set, 0, Owner{ID: "abc", IfName: "eth0"}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for name, want := range map[string]string{"10.1.0.2": "abc\r\neth0", "last_reserved_ip.0": "10.1.0.2", "lock": ""} {
		path := filepath.Join(dir, "net1", name)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s: got %q, want %q", name, b, want)
		}
		fi, _ := os.Stat(path)
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: got mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, "net1")); fi.Mode().Perm() != 0o700 {
		t.Errorf("network dir: got mode %v, want 0700", fi.Mode().Perm())
	}
}

// TestForeignChanges: reservations created and removed by another writer
// (the reference binary) between berth's runs are seen although berth
// keeps an index.
func TestForeignChanges(t *testing.T) {
	dir := t.TempDir()
	set := mustRange(t, `"subnet":"10.1.0.0/29"`)
	allocN(t, dir, set, 1) // 10.1.0.2, index written
	netDir := filepath.Join(dir, "net1")
	// A reference process reserves .3 and .4 and frees .2.
	for _, ip := range []string{"10.1.0.3", "10.1.0.4"} {
		if err := os.WriteFile(filepath.Join(netDir, ip), []byte("ref-"+ip+"\r\neth0"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(filepath.Join(netDir, "10.1.0.2")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	defer s.Close()
	if got, _ := s.ByOwner("ref-10.1.0.3", "eth0"); len(got) != 1 || got[0].String() != "10.1.0.3" {
		t.Errorf("ByOwner(ref-10.1.0.3): got %v, want [10.1.0.3]", got)
	}
	if got, _ := s.ByOwner("c0", "eth0"); len(got) != 0 {
		t.Errorf("ByOwner(c0) after foreign release: got %v, want []", got)
	}
	a, _, err := Allocate(s, set, 0, Owner{ID: "x", IfName: "eth0"})
	if err != nil || a.String() != "10.1.0.5" {
		t.Errorf("Allocate: got %v %v, want 10.1.0.5", a, err)
	}
}

func TestLegacyOwner(t *testing.T) {
	dir := t.TempDir()
	netDir := filepath.Join(dir, "net1")
	if err := os.MkdirAll(netDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(netDir, "10.1.0.9"), []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	defer s.Close()
	got, err := s.ReleaseOwner("old", "eth7")
	if err != nil || len(got) != 1 {
		t.Fatalf("ReleaseOwner(old): got %v %v, want [10.1.0.9]", got, err)
	}
	if _, err := os.Stat(filepath.Join(netDir, "10.1.0.9")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file still there: %v", err)
	}
}

func TestSubnetsChoose(t *testing.T) {
	dir := t.TempDir()
	pools := []Pool{{Base: netip.MustParsePrefix("10.10.0.0/16"), Size: 24}}
	s, err := OpenSubnets(dir)
	if err != nil {
		t.Fatal(err)
	}
	avoid := []netip.Prefix{netip.MustParsePrefix("10.10.0.128/25"), netip.MustParsePrefix("10.10.1.7/32")}
	var got []string
	for _, n := range []string{"a", "b"} {
		p, err := s.Choose(n, "0.0", pools, avoid)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, p.String())
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if want := "10.10.2.0/24 10.10.3.0/24"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
	// Persisted, and released per network.
	s, err = OpenSubnets(dir)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.Get("a", "0.0"); !ok || p.String() != "10.10.2.0/24" {
		t.Errorf("Get(a): got %v %v, want 10.10.2.0/24", p, ok)
	}
	s.Release("a")
	p, err := s.Choose("c", "0.0", pools, nil)
	if err != nil || p.String() != "10.10.0.0/24" {
		t.Errorf("Choose(c) after release: got %v %v, want 10.10.0.0/24", p, err)
	}
	small := []Pool{{Base: netip.MustParsePrefix("10.20.0.0/23"), Size: 24}}
	_, err = s.Choose("d", "0.0", small, []netip.Prefix{netip.MustParsePrefix("10.20.0.0/22")})
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != cni.CodeAddressExhausted || !strings.Contains(ce.Msg, "10.20.0.0/23 as /24s") {
		t.Errorf("exhausted pool: got %v, want code 100 naming the pool", err)
	}
	s.Close()
}

// BenchmarkAllocate measures one ADD's store work (lock, index load,
// allocation, index save) on a network holding 10,000 reservations.
func BenchmarkAllocate(b *testing.B) {
	dir := b.TempDir()
	set := mustRange(b, `"subnet":"10.0.0.0/16"`)
	s := openStore(b, dir)
	for i := 0; i < 10000; i++ {
		if _, _, err := Allocate(s, set, 0, Owner{ID: fmt.Sprintf("seed%d", i), IfName: "eth0"}); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s := openStore(b, dir)
		id := fmt.Sprintf("b%d", i)
		if held, _ := s.ByOwner(id, "eth0"); len(held) != 0 {
			b.Fatal("unexpected reservation")
		}
		a, _, err := Allocate(s, set, 0, Owner{ID: id, IfName: "eth0"})
		if err != nil {
			b.Fatal(err)
		}
		// Free it again so the store stays at 10k and never fills.
		if err := s.Release(a, Owner{ID: id, IfName: "eth0"}); err != nil {
			b.Fatal(err)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestIndexCheckedAgainstFiles: an index entry that disagrees with the
// reservation files (damaged while the stamp still matches) is caught by
// ByOwner's check, and the index is rebuilt.
func TestIndexCheckedAgainstFiles(t *testing.T) {
	dir := t.TempDir()
	set := mustRange(t, `"subnet":"10.1.0.0/24"`)
	allocN(t, dir, set, 2) // c0 -> 10.1.0.2, c1 -> 10.1.0.3
	key := ownerKey("c0", "eth0")
	bucket := filepath.Join(dir, metaDirName, "index", "net1", "o", key[:2])
	if err := os.WriteFile(bucket, []byte(key+" 10.1.0.3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	defer s.Close()
	got, err := s.ByOwner("c0", "eth0")
	if err != nil || len(got) != 1 || got[0].String() != "10.1.0.2" {
		t.Fatalf("ByOwner(c0): got %v %v, want [10.1.0.2]", got, err)
	}
}

// TestKilledWriterTempSwept: a plugin killed between writing a temporary
// file and renaming it into place (test/crash found these piling up, each
// naming a container) leaves nothing once the store or the subnet table is
// opened again under its lock.
func TestKilledWriterTempSwept(t *testing.T) {
	dataDir := t.TempDir()
	s := openStore(t, dataDir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	subs, err := OpenSubnets(dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := subs.Close(); err != nil {
		t.Fatal(err)
	}
	// What writeAtomic and createExclusive leave when killed before the
	// rename or link.
	leftovers := []string{
		filepath.Join(dataDir, metaDirName, "index", "net1", tmpPrefix+"123"),
		filepath.Join(dataDir, metaDirName, "subnets.tmp", tmpPrefix+"456"),
	}
	for _, p := range leftovers {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte("victim\neth0"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s = openStore(t, dataDir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if subs, err = OpenSubnets(dataDir); err != nil {
		t.Fatal(err)
	}
	if err := subs.Close(); err != nil {
		t.Fatal(err)
	}
	for _, p := range leftovers {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: got %v after reopening, want it removed", p, err)
		}
	}
}
