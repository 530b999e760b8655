package fwplugin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/berthnet/berth/internal/nstest"
)

// TestCheckDelGC drives the rest of the lifecycle on the nftables backend
// and reads the kernel's sets after each step.
func TestCheckDelGC(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t)
	a := w.network("neta", 1, `,"ingressPolicy":"isolated"`)
	a1, a2 := w.attach(a, "a1"), w.attach(a, "a2")
	allow := func() string { return nft(t, w, "list", "set", "inet", "berth", "fw-allow4") }
	icc := func() string { return nft(t, w, "list", "set", "bridge", "berth", "fw-icc-off") }

	if err := w.RT.Check(ctx, a.list, a1.rt); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	w.Host.MustExec(t, "nft", "delete element inet berth fw-allow4 { "+a1.ip+" }")
	if err := w.RT.Check(ctx, a.list, a1.rt); err == nil || !strings.Contains(err.Error(), "fw-allow4") {
		t.Errorf("CHECK with a1's element removed by hand: got %v, want an error naming fw-allow4", err)
	}

	// GC keeping only a1: a2's entries go, a1's stay (a1's IP was removed
	// by hand above, its port must remain).
	if err := w.RT.GC(ctx, a.list, a1.rt); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if s := allow(); strings.Contains(s, a2.ip) {
		t.Errorf("fw-allow4 after GC: got %s, want %s gone", s, a2.ip)
	}
	if s := icc(); strings.Contains(s, "ctr-a2") || !strings.Contains(s, "ctr-a1") {
		t.Errorf("fw-icc-off after GC: got %s, want ctr-a1 and not ctr-a2", s)
	}

	// DEL without prevResult (a runtime that lost its cache): the
	// attachment's elements are found by their tag.
	fwOnly := nstest.Conflist(t, []byte(`{"cniVersion":"1.1.0","name":"neta","plugins":[{"type":"firewall","ingressPolicy":"isolated"}]}`))
	fresh := nstest.NewRuntime(t, w.Host)
	for i := 0; i < 2; i++ {
		if err := fresh.Del(ctx, fwOnly, a1.rt); err != nil {
			t.Fatalf("DEL #%d without prevResult: %v", i+1, err)
		}
	}
	if s := icc(); strings.Contains(s, "ctr-a1") {
		t.Errorf("fw-icc-off after DEL: got %s, want ctr-a1 gone", s)
	}

	// DEL with prevResult (the fast path), then again.
	w.attachAgain(a, a2)
	if s := allow(); !strings.Contains(s, a2.ip) {
		t.Fatalf("fw-allow4 after re-ADD: got %s, want %s", s, a2.ip)
	}
	for i := 0; i < 2; i++ {
		if err := w.RT.Del(ctx, a.list, a2.rt); err != nil {
			t.Fatalf("DEL #%d: %v", i+1, err)
		}
	}
	if s := allow(); strings.Contains(s, a2.ip) {
		t.Errorf("fw-allow4 after DEL: got %s, want %s gone", s, a2.ip)
	}
	if s := icc(); strings.Contains(s, "ctr-") {
		t.Errorf("fw-icc-off after every DEL: got %s, want empty", s)
	}
}

func (w *world) attachAgain(n *network, c *container) {
	w.T.Helper()
	res, err := w.RT.Add(context.Background(), n.list, c.rt)
	if err != nil {
		w.T.Fatalf("re-ADD: %v", err)
	}
	// GC released the old reservation: the address may be new.
	c.ip = res.IPs[0].Address.IP.String()
}

// TestDelNothing: DEL without ADD, without netns, on a namespace with no
// berth table at all.
func TestDelNothing(t *testing.T) {
	e := nstest.NewEnv(t)
	host, r := e.Host, e.RT
	for _, backend := range []string{"nftables", "iptables"} {
		list := nstest.Conflist(t, []byte(fmt.Sprintf(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"firewall","backend":%q}]}`, backend)))
		rt := nstest.Attachment("never-added", host, "eth0")
		rt.NetNS = ""
		for i := 0; i < 2; i++ {
			if err := r.Del(context.Background(), list, rt); err != nil {
				t.Errorf("%s DEL #%d: %v", backend, i+1, err)
			}
		}
	}
	if out := host.MustExec(t, "nft", "list", "tables"); strings.Contains(out, "berth") {
		t.Errorf("tables after DEL without ADD: got %q, want no berth table", out)
	}
}

func TestBadConfig(t *testing.T) {
	e := nstest.NewEnv(t)
	host, r := e.Host, e.RT
	c := nstest.NewNS(t, "ctr")
	prev := `{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"veth1"},{"name":"eth0","sandbox":"` + c.Path + `"}],` +
		`"ips":[{"address":"10.30.0.2/24","interface":2}]}`
	noVeth := `{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"` + c.Path + `"}],"ips":[{"address":"10.30.0.2/24","interface":0}]}`
	tests := []struct {
		name, fields string
		wantCode     uint
		wantMsg      string
	}{
		{"unknown policy", `"ingressPolicy":"closed","prevResult":` + prev, 7, `ingressPolicy "closed"`},
		{"firewalld", `"backend":"firewalld","prevResult":` + prev, 7, "backend firewalld"},
		{"unknown backend", `"backend":"pf","prevResult":` + prev, 7, `backend "pf"`},
		{"no prevResult", `"ingressPolicy":"same-bridge"`, 7, "prevResult"},
		{"isolated without veth", `"ingressPolicy":"isolated","prevResult":` + noVeth, 7, "host-side veth"},
		{"bad admin chain", `"backend":"iptables","iptablesAdminChainName":"a b","prevResult":` + prev, 7, "iptablesAdminChainName"},
		{"wrong type", `"ingressPolicy":3,"prevResult":` + prev, 6, "ingressPolicy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			list := nstest.Conflist(t, []byte(`{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"firewall",`+tt.fields+`}]}`))
			_, err := r.Add(context.Background(), list, nstest.Attachment("bad", c, "eth0"))
			var ce *types.Error
			if !errors.As(err, &ce) {
				t.Fatalf("got %v, want a CNI error", err)
			}
			if ce.Code != tt.wantCode || !strings.Contains(ce.Msg, tt.wantMsg) {
				t.Fatalf("got code %d %q, want code %d mentioning %q", ce.Code, ce.Msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if out := host.MustExec(t, "nft", "list", "ruleset"); strings.Contains(out, "fw-") {
		t.Errorf("ruleset after refused ADDs: got %q, want no firewall rules", out)
	}
}
