package linkref

import (
	"fmt"
	"slices"
	"sync"
	"testing"
)

// TestConcurrentUsers: many goroutines (each with its own lock file
// descriptor, as separate processes have) add and release users of one
// link; the count is exact and the last release reports it unused.
func TestConcurrentUsers(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	const n = 32
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.Lock()
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Unlock()
			if err := l.Add("eth0.100", User{Network: "net", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"}, i == 0); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	l, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	users, err := l.Users("eth0.100")
	l.Unlock()
	if err != nil || len(users) != n {
		t.Fatalf("users: got %d (%v), want %d", len(users), err, n)
	}
	unusedCount := 0
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.Lock()
			if err != nil {
				t.Error(err)
				return
			}
			defer l.Unlock()
			unused, err := l.Release(User{Network: "net", ContainerID: fmt.Sprintf("c%d", i), IfName: "eth0"})
			if err != nil {
				t.Error(err)
			}
			if slices.Contains(unused, "eth0.100") {
				unusedCount++ // under the lock
			}
		}()
	}
	wg.Wait()
	if unusedCount != 1 {
		t.Fatalf("releases that found the link unused: got %d, want exactly the last one", unusedCount)
	}
}

func TestPruneAndPending(t *testing.T) {
	s := Store{Dir: t.TempDir()}
	l, err := s.Lock()
	if err != nil {
		t.Fatal(err)
	}
	defer l.Unlock()
	a, b, other := User{"n", "a", "eth0", nil}, User{"n", "b", "eth0", []string{"10.0.0.5"}}, User{"m", "x", "eth0", nil}
	for _, u := range []User{a, b, other} {
		if err := l.Add("eth0.100", u, u.Is(a)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Add("eth0.200", b, true); err != nil {
		t.Fatal(err)
	}
	if p, _ := l.Pending("eth0.200"); !p {
		t.Fatal("eth0.200: want pending after a creating Add")
	}
	// GC of network n with only a valid: b goes everywhere; eth0.200 is
	// left unused, eth0.100 keeps a and m's user.
	unused, dropped, err := l.Prune("n", a.Is)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(unused, []string{"eth0.200"}) {
		t.Fatalf("unused: got %v, want [eth0.200]", unused)
	}
	if got := dropped["eth0.100"]; len(got) != 1 || !got[0].Is(b) || !slices.Equal(got[0].Addrs, b.Addrs) {
		t.Fatalf("dropped from eth0.100: got %v, want b with its addresses", got)
	}
	users, _ := l.Users("eth0.100")
	if len(users) != 2 || !users[0].Is(a) || !users[1].Is(other) {
		t.Fatalf("eth0.100 users: got %v, want a and m's", users)
	}
	if err := l.Forget("eth0.200"); err != nil {
		t.Fatal(err)
	}
	if err := l.Settle("eth0.100"); err != nil {
		t.Fatal(err)
	}
	if p, _ := l.Pending("eth0.100"); p {
		t.Fatal("eth0.100 still pending after Settle")
	}
}

func TestValidName(t *testing.T) {
	for _, tt := range []struct {
		name string
		ok   bool
	}{{"eth0.100", true}, {"bmv1a2b3c4d", true}, {"", false}, {"..", false}, {"a/b", false}, {"lock", false}, {".hidden", false}, {"averyveryverylongname", false}} {
		if err := validName(tt.name); (err == nil) != tt.ok {
			t.Errorf("validName(%q): got %v, want ok=%v", tt.name, err, tt.ok)
		}
	}
}
