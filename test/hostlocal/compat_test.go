package hostlocal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
)

// TestReferenceLayout writes a store by hand exactly as the reference
// host-local leaves it and checks that berth honours it, and that the
// files berth writes are the reference's, byte for byte.
func TestReferenceLayout(t *testing.T) {
	e := newEnv(t)
	l := e.list("1.0.0", "net1", `{"type":"host-local","subnet":"10.1.0.0/24"}`)
	dir := e.netDir("net1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"10.1.0.2":           "refc\r\neth0",
		"10.1.0.3":           "old", // pre-0.4 reference: container ID only
		"last_reserved_ip.0": "10.1.0.3",
		"lock":               "",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if got := ips(e.mustAdd(l, e.att("c1"))); got != "10.1.0.4/24 gw 10.1.0.1" {
		t.Fatalf("ADD: got %s, want 10.1.0.4/24 (10.1.0.2 and .3 are the reference's)", got)
	}
	for name, want := range map[string]string{"10.1.0.4": "c1\r\neth0", "last_reserved_ip.0": "10.1.0.4"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != want {
			t.Errorf("%s: got %q, want %q", name, b, want)
		}
		if fi, _ := os.Stat(filepath.Join(dir, name)); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: got mode %v, want 0600", name, fi.Mode().Perm())
		}
	}
	// berth's DEL releases what the reference reserved, legacy files too.
	e.mustDel(l, e.att("refc"))
	e.mustDel(l, nstest.Attachment("old", e.ctr, "eth9"))
	if got, want := e.reservations("net1"), `10.1.0.4=c1\r\neth0`; got != want {
		t.Fatalf("after DEL: got %s, want %s", got, want)
	}
}

// TestReferenceInterop runs the reference host-local v1.9.1 and berth's on
// one store, one after the other and at the same time: they share the lock
// and the files, so no address is ever handed out twice, and each releases
// what the other reserved.
func TestReferenceInterop(t *testing.T) {
	e := newEnv(t)
	// Only the reference's directory on the path, so "host-local" is it.
	ref := &nstest.Runtime{Runtime: sandbox.NewRuntime(e.Host.NS, t.TempDir(), nstest.BuildReference(t, "ipam/host-local")), Host: e.Host}
	l := e.list("1.0.0", "net1", `{"type":"host-local","ranges":[[{"subnet":"10.1.0.0/24"}],[{"subnet":"fd00:9::/64"}]]}`)
	ctx := context.Background()
	runtimes := map[string]*nstest.Runtime{"berth": e.RT, "ref": ref}

	// Alternating: each sees the other's reservations (berth's index must
	// notice the reference's files).
	var got []string
	for i := 0; i < 6; i++ {
		who := []string{"berth", "ref"}[i%2]
		res, err := runtimes[who].Add(ctx, l, e.att(fmt.Sprintf("%s%d", who, i)))
		if err != nil {
			t.Fatalf("%s ADD %d: %v", who, i, err)
		}
		got = append(got, res.IPs[0].Address.IP.String())
	}
	if want := "10.1.0.2 10.1.0.3 10.1.0.4 10.1.0.5 10.1.0.6 10.1.0.7"; strings.Join(got, " ") != want {
		t.Fatalf("alternating ADDs: got %s, want %s", strings.Join(got, " "), want)
	}

	// Concurrently, 12 of each.
	var mu sync.Mutex
	seen := map[string]string{}
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for i := 0; i < 24; i++ {
		who := []string{"berth", "ref"}[i%2]
		id := fmt.Sprintf("%sc%d", who, i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := runtimes[who].Add(ctx, l, e.att(id))
			if err != nil {
				errs <- fmt.Errorf("%s: %w", id, err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, ip := range res.IPs {
				if prev, dup := seen[ip.Address.IP.String()]; dup {
					errs <- fmt.Errorf("%s and %s both got %s", prev, id, ip.Address.IP)
				}
				seen[ip.Address.IP.String()] = id
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(strings.Fields(e.reservations("net1"))); n != 2*(6+24) {
		t.Fatalf("got %d reservation files, want %d", n, 2*(6+24))
	}

	// Cross release: berth deletes the reference's attachments and the
	// reference deletes berth's.
	for i := 0; i < 24; i++ {
		who := []string{"berth", "ref"}[i%2]
		other := map[string]string{"berth": "ref", "ref": "berth"}[who]
		if err := runtimes[other].Del(ctx, l, e.att(fmt.Sprintf("%sc%d", who, i))); err != nil {
			t.Fatalf("%s DEL of %sc%d: %v", other, who, i, err)
		}
	}
	for i := 0; i < 6; i++ {
		who := []string{"berth", "ref"}[i%2]
		if err := runtimes[who].Del(ctx, l, e.att(fmt.Sprintf("%s%d", who, i))); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.reservations("net1"); got != "" {
		t.Fatalf("after DELs: got %s, want none", got)
	}
}
