package retry_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	current "github.com/containernetworking/cni/pkg/types/100"

	"github.com/berthnet/berth/internal/nstest"
)

// A runtime retrying an ADD after a timeout repeats it with the same
// container ID and ifname. The repeat fails (code 101: the interface is
// there), and must leave the first ADD's attachment whole: its reservation
// (a third container must not get its address), its veth and its traffic.
func TestRepeatedAddKeepsAttachment(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-bridge-ports.conflist"))
	c1 := e.Run(list, "first")
	ip1 := c1.IP(t, "4")

	_, err := e.RT.Add(context.Background(), list, c1.RC)
	wantCode(t, err, 101)

	if got := reservations(e, list.Name); !contains(got, ip1) {
		t.Fatalf("reservations after the repeated ADD: %v, want %s still reserved", got, ip1)
	}
	c3 := e.Run(list, "third")
	if ip3 := c3.IP(t, "4"); ip3 == ip1 {
		t.Fatalf("third container got %s, the first container's address", ip3)
	}
	nstest.Ping(t, e.Host, ip1)
	nstest.Ping(t, c1.NS, "172.17.0.1")
	nstest.Ping(t, c3.NS, ip1)
	if err := e.RT.Check(context.Background(), list, c1.RC); err != nil {
		t.Fatalf("CHECK of the first container after the repeated ADD: %v", err)
	}
}

// A runtime that times out and retries while the first ADD is still
// running sends the same ADD concurrently. One wins; the others fail with
// 101 and undo nothing of the winner's: not its veth (a pair is made whole,
// so a marked veth whose container end exists is live, not a leftover), not
// its reservation.
func TestConcurrentRepeatedAdds(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-bridge-ports.conflist"))
	for round := 0; round < 5; round++ {
		c := &nstest.Container{NS: nstest.NewNS(t, "ctr"), ID: fmt.Sprintf("dup-%d", round)}
		rc := nstest.Attachment(c.ID, c.NS, "eth0")
		t.Cleanup(func() { _ = e.RT.Del(context.Background(), list, rc) })
		const n = 4
		var wg sync.WaitGroup
		results := make([]*current.Result, n)
		errs := make([]error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i], errs[i] = e.RT.Add(context.Background(), list, rc)
			}(i)
		}
		wg.Wait()
		var won *current.Result
		for i := 0; i < n; i++ {
			if errs[i] == nil {
				if won != nil {
					t.Fatalf("round %d: two concurrent ADDs of one attachment succeeded", round)
				}
				won = results[i]
				continue
			}
			wantCode(t, errs[i], 101)
		}
		if won == nil {
			t.Fatalf("round %d: no ADD succeeded: %v", round, errs)
		}
		ip := nstest.IP(t, won, "4")
		if got := reservations(e, list.Name); !contains(got, ip) {
			t.Fatalf("round %d: reservations %v, want the winner's %s", round, got, ip)
		}
		nstest.Ping(t, e.Host, ip)
		if err := e.RT.Check(context.Background(), list, rc); err != nil {
			t.Fatalf("round %d: CHECK of the winner: %v", round, err)
		}
	}
}
