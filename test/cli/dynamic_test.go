package cli_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
	"github.com/berthnet/berth/pkg/inspect"
)

// TestDynamicPorts: 32 concurrent ADDs each publishing container port 80
// with "hostPort": 0 (docker run -P) get 32 distinct ports of the default
// range, which `berth port` shows and which a client in an outside
// namespace reaches over real TCP, each landing in its own container.
// CHECK keeps the port; DEL releases it.
func TestDynamicPorts(t *testing.T) {
	testDynamicPorts(t, "nftables", 32)
}

// TestDynamicPortsIPTables: the same with portmap's iptables backend
// (fewer containers: each of its rules is iptables processes).
func TestDynamicPortsIPTables(t *testing.T) {
	testDynamicPorts(t, "iptables", 8)
}

func testDynamicPorts(t *testing.T, backend string, n int) {
	w := newWorld(t)
	list := w.network(t, "dyn-net", nstest.UniqueName("br"), "10.236.0.0/24", nstest.SetField(1, "backend", backend))
	ctrs := make([]*ctr, n)
	for i := range ctrs {
		id := fmt.Sprintf("%064x", i+1)
		nsx, err := sandbox.NewNS(nstest.UniqueName("d"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = nsx.Delete() })
		c := &ctr{id: id, name: fmt.Sprintf("dyn%d", i), ns: nsx}
		c.rc = &libcni.RuntimeConf{ContainerID: id, NetNS: nsx.Path, IfName: "eth0",
			Args:           [][2]string{{"K8S_POD_NAME", c.name}},
			CapabilityArgs: map[string]any{"portMappings": []mapping{{HostPort: 0, ContainerPort: 80, Protocol: "tcp"}}}}
		ctrs[i] = c
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.res, errs[i] = w.RT.Add(context.Background(), list, c.rc)
		}()
	}
	wg.Wait()
	for i, c := range ctrs {
		t.Cleanup(func() { _ = w.RT.Del(context.Background(), list, c.rc) })
		if errs[i] != nil {
			t.Fatalf("ADD %s: %v", c.name, errs[i])
		}
	}

	var rows []struct {
		Network string `json:"network"`
		inspect.Attachment
	}
	psOut, psErr, code := w.berth(t, "ps", "--json")
	if code != 0 || psErr != "" {
		t.Fatalf("berth ps: exit %d\n%s", code, psErr)
	}
	if err := json.Unmarshal([]byte(psOut), &rows); err != nil {
		t.Fatal(err)
	}
	portOf := map[string]int{}
	seen := map[int]string{}
	for _, r := range rows {
		if len(r.Ports) != 1 {
			t.Fatalf("%s: ports %+v, want one", r.Name, r.Ports)
		}
		p := r.Ports[0]
		if p.HostPort < 32768 || p.HostPort > 60999 || p.ContainerPort != 80 {
			t.Errorf("%s: %s, want a host port in 32768-60999", r.Name, p)
		}
		if other, dup := seen[p.HostPort]; dup {
			t.Errorf("host port %d given to %s and %s", p.HostPort, other, r.Name)
		}
		seen[p.HostPort] = r.Name
		portOf[r.ContainerID] = p.HostPort
	}
	if len(portOf) != n {
		t.Fatalf("berth ps shows %d containers with ports, want %d", len(portOf), n)
	}
	for _, c := range ctrs {
		c.serve(t)
	}
	for _, c := range ctrs {
		got, err := httpGet(w.out, fmt.Sprintf("http://%s:%d/", hostOutIP, portOf[c.id]))
		if err != nil || got != "hello from "+c.id {
			addr, _ := c.ns.Exec("ip", "-br", "addr", "show", "eth0")
			nft, _ := w.Host.Exec("nft", "list", "map", "inet", "berth", "ports4")
			ss, _ := c.ns.Exec("ss", "-ltn")
			t.Errorf("%s via its port %d: %q, %v\ncontainer: %s%s\nports4: %s", c.name, portOf[c.id], got, err, addr, ss, nft)
		}
	}
	c0 := ctrs[0]
	if got := w.mustBerth(t, "port", c0.name); got != fmt.Sprintf("80/tcp -> 0.0.0.0:%d\n", portOf[c0.id]) {
		t.Errorf("berth port %s: %q", c0.name, got)
	}
	if err := w.RT.Check(context.Background(), list, c0.rc); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if got := w.mustBerth(t, "port", c0.name); got != fmt.Sprintf("80/tcp -> 0.0.0.0:%d\n", portOf[c0.id]) {
		t.Errorf("after CHECK: %q", got)
	}
	if err := w.RT.Del(context.Background(), list, c0.rc); err != nil {
		t.Fatal(err)
	}
	if _, _, code := w.berth(t, "port", c0.name); code != 3 {
		t.Errorf("berth port after DEL: exit %d, want 3", code)
	}
	if nft := w.Host.MustExec(t, "nft", "list", "ruleset"); strings.Contains(nft, c0.id) {
		t.Errorf("%s still has rules after DEL:\n%s", c0.id, nft)
	}
	state := filepath.Join(w.DataDir, "portmap", "dyn-net", c0.id+"@eth0.json")
	if _, err := os.Stat(state); !os.IsNotExist(err) {
		t.Errorf("chosen-port state %s after DEL: %v", state, err)
	}
}

// TestDynamicPortSkipsHostSockets: a port of the range that a host socket
// holds is skipped, and so is one another mapping published statically.
func TestDynamicPortSkipsHostSockets(t *testing.T) {
	w := newWorld(t)
	list := w.network(t, "skip-net", nstest.UniqueName("br"), "10.237.0.0/24",
		nstest.SetField(1, "hostPortRange", "41000-41003"))
	var l net.Listener
	err := w.Host.Do(func(ns.NetNS) (err error) {
		l, err = net.Listen("tcp", "127.0.0.1:41000")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	w.run(t, list, webID, "static", mapping{HostPort: 41001, ContainerPort: 80, Protocol: "tcp"})
	dyn := w.run(t, list, dbID, "dynamic", mapping{HostPort: 0, ContainerPort: 80, Protocol: "tcp"})
	if got := w.mustBerth(t, "port", dyn.name); got != "80/tcp -> 0.0.0.0:41002\n" {
		t.Fatalf("berth port: %q, want 41002 (41000 has a host socket, 41001 a static mapping)", got)
	}
}

// TestDynamicPortExhausted: with every port of hostPortRange taken, the
// ADD fails with code 101 naming the range, and leaves no chosen-port
// state and no published port behind; a DEL frees a port for the next.
func TestDynamicPortExhausted(t *testing.T) {
	w := newWorld(t)
	list := w.network(t, "full-net", nstest.UniqueName("br"), "10.242.0.0/24",
		nstest.SetField(1, "hostPortRange", "42000-42001"))
	dyn := []mapping{{HostPort: 0, ContainerPort: 80, Protocol: "tcp"}}
	a := w.run(t, list, webID, "a", dyn...)
	w.run(t, list, dbID, "b", dyn...)

	nsx, err := sandbox.NewNS(nstest.UniqueName("c"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsx.Delete() })
	const thirdID = "3333333333333333333333333333333333333333333333333333333333333333"
	rc := &libcni.RuntimeConf{ContainerID: thirdID, NetNS: nsx.Path, IfName: "eth0",
		CapabilityArgs: map[string]any{"portMappings": dyn}}
	t.Cleanup(func() { _ = w.RT.Del(context.Background(), list, rc) })
	_, err = w.RT.Add(context.Background(), list, rc)
	if err == nil || !strings.Contains(err.Error(), "hostPortRange 42000-42001") {
		t.Fatalf("third ADD: %v, want an error naming hostPortRange 42000-42001", err)
	}
	var ce *types.Error
	if !errors.As(err, &ce) || ce.Code != 101 || !strings.Contains(ce.Msg, "no free tcp host port") {
		t.Errorf("error %v, want code 101 no free tcp host port", err)
	}
	if _, err := os.Stat(filepath.Join(w.DataDir, "portmap", "full-net", thirdID+"@eth0.json")); !os.IsNotExist(err) {
		t.Errorf("state of the failed ADD: %v", err)
	}
	if nft := w.Host.MustExec(t, "nft", "list", "map", "inet", "berth", "ports4"); strings.Contains(nft, thirdID) {
		t.Errorf("the failed ADD published a port:\n%s", nft)
	}
	// The runtime DELs a failed ADD (libcni does not undo the plugins
	// before portmap).
	if err := w.RT.Del(context.Background(), list, rc); err != nil {
		t.Fatal(err)
	}
	if err := w.RT.Del(context.Background(), list, a.rc); err != nil {
		t.Fatal(err)
	}
	if _, err := w.RT.Add(context.Background(), list, rc); err != nil {
		t.Fatalf("ADD after a DEL freed a port: %v", err)
	}
	if got := w.mustBerth(t, "port", thirdID[:8]); !strings.HasPrefix(got, "80/tcp -> 0.0.0.0:4200") {
		t.Errorf("berth port: %q", got)
	}
}

// TestDynamicPortGC: GC with one attachment valid releases the other's
// chosen port (state and published port), and keeps the valid one's.
func TestDynamicPortGC(t *testing.T) {
	w := newWorld(t)
	list := w.network(t, "gc-net", nstest.UniqueName("br"), "10.243.0.0/24")
	dyn := []mapping{{HostPort: 0, ContainerPort: 80, Protocol: "tcp"}}
	keep := w.run(t, list, webID, "keep", dyn...)
	gone := w.run(t, list, dbID, "gone", dyn...)
	state := func(id string) string { return filepath.Join(w.DataDir, "portmap", "gc-net", id+"@eth0.json") }
	for _, id := range []string{keep.id, gone.id} {
		if _, err := os.Stat(state(id)); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	if err := w.RT.GC(context.Background(), list, keep.rc); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(state(gone.id)); !os.IsNotExist(err) {
		t.Errorf("state of the collected attachment: %v", err)
	}
	if _, err := os.Stat(state(keep.id)); err != nil {
		t.Errorf("state of the valid attachment: %v", err)
	}
	if _, _, code := w.berth(t, "port", "gone"); code == 0 {
		// The registry entry goes too (bridge GC), so the container is
		// unknown; either way no port is left.
		if out := w.mustBerth(t, "port", "gone"); out != "" {
			t.Errorf("berth port gone after GC: %q", out)
		}
	}
	if out := w.mustBerth(t, "port", "keep"); !strings.HasPrefix(out, "80/tcp -> 0.0.0.0:") {
		t.Errorf("berth port keep after GC: %q", out)
	}
}
