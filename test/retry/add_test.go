package retry_test

import (
	"context"
	"testing"

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
