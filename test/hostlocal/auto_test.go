package hostlocal

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/pkg/cni"
)

// TestAutoSubnet: "subnet": "auto" takes the first subnet of Docker's
// default pools that no address or route of the (private) host namespace
// and no other network uses, keeps it while the network holds
// reservations, and gives it back with the last one.
func TestAutoSubnet(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// 172.17.0.0/16 is on a host link; 172.18.0.0/16 is only routed.
	peer := nstest.NewNS(t, "peer")
	nstest.Veth(t, e.Host, "h0", "172.17.0.1/16", peer, "p0", "172.17.0.2/16")
	e.Host.MustExec(t, "ip", "route", "add", "172.18.0.0/16", "via", "172.17.0.2")

	auto := `{"type":"host-local","ranges":[[{"subnet":"auto"}]]}`
	nA, nB, nC := e.list("1.1.0", "nA", auto), e.list("1.1.0", "nB", auto), e.list("1.1.0", "nC", auto)
	step := func(what string, got, want string) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: got %s, want %s", what, got, want)
		}
	}
	step("nA first ADD", ips(e.mustAdd(nA, e.att("a1"))), "172.19.0.2/16 gw 172.19.0.1")
	// nB's first attachment comes from a runtime whose cache e.RT does not
	// share, so that the GC below is the plugin's, not a libcni DEL.
	other := nstest.NewRuntime(t, e.Host)
	res, err := other.Add(ctx, nB, e.att("b1"))
	if err != nil {
		t.Fatal(err)
	}
	step("nB first ADD", ips(res), "172.20.0.2/16 gw 172.20.0.1")
	// A bridge for nA would now route 172.19.0.0/16 on the host: nA keeps
	// its subnet all the same.
	e.Host.MustExec(t, "ip", "route", "add", "172.19.0.0/16", "via", "172.17.0.2")
	step("nA second ADD", ips(e.mustAdd(nA, e.att("a2"))), "172.19.0.3/16 gw 172.19.0.1")
	e.Host.MustExec(t, "ip", "route", "del", "172.19.0.0/16")

	// The last DEL gives nA's subnet back; nC gets it.
	e.mustDel(nA, e.att("a1"))
	e.mustDel(nA, e.att("a2"))
	step("nC ADD after nA emptied", ips(e.mustAdd(nC, e.att("c1"))), "172.19.0.2/16 gw 172.19.0.1")

	// GC emptying nB gives its subnet back too.
	if err := e.RT.GC(ctx, nB); err != nil {
		t.Fatalf("GC: %v", err)
	}
	step("nA ADD after nB collected", ips(e.mustAdd(nA, e.att("a3"))), "172.20.0.2/16 gw 172.20.0.1")
	step("nB ADD after GC", ips(e.mustAdd(nB, e.att("b2"))), "172.21.0.2/16 gw 172.21.0.1")
}

func TestAutoSubnetExhausted(t *testing.T) {
	e := newEnv(t)
	peer := nstest.NewNS(t, "peer")
	nstest.Veth(t, e.Host, "h0", "10.99.0.1/24", peer, "p0", "10.99.0.2/24")
	ipam := `{"type":"host-local","ranges":[[{"subnet":"auto"}]],"subnetPools":[{"base":"10.99.0.0/23","size":24}]}`
	if got := ips(e.mustAdd(e.list("1.0.0", "nX", ipam), e.att("x1"))); got != "10.99.1.2/24 gw 10.99.1.1" {
		t.Fatalf("nX: got %s, want 10.99.1.2/24 gw 10.99.1.1", got)
	}
	nY := e.list("1.0.0", "nY", ipam)
	_, err := e.add(nY, e.att("y1"))
	ce := cniErr(t, err)
	if want := `host-local: no free subnet for network "nY" in subnet pools [10.99.0.0/23 as /24s]`; ce.Code != cni.CodeAddressExhausted || !strings.HasPrefix(ce.Msg, want) {
		t.Fatalf("got %d %q, want %d %q", ce.Code, ce.Msg, cni.CodeAddressExhausted, want)
	}
	if got := e.reservations("nY"); got != "" {
		t.Fatalf("nY files after failed ADD: got %s, want none", got)
	}
}

// TestAutoSubnetConcurrent: first ADDs of eight auto networks at once (eight
// plugin processes) get eight different subnets.
func TestAutoSubnetConcurrent(t *testing.T) {
	e := newEnv(t)
	ipam := `{"type":"host-local","ranges":[[{"subnet":"auto"}]],"subnetPools":[{"base":"10.64.0.0/16","size":24}]}`
	const n = 8
	got := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		l := e.list("1.0.0", fmt.Sprintf("auto%d", i), ipam)
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := e.add(l, e.att("c1"))
			if err != nil {
				errs[i] = err
				return
			}
			got[i] = res.IPs[0].Address.String()
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := []string{"10.64.0.2/24", "10.64.1.2/24", "10.64.2.2/24", "10.64.3.2/24", "10.64.4.2/24", "10.64.5.2/24", "10.64.6.2/24", "10.64.7.2/24"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}
