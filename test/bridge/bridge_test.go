package bridge_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// Seed scenario 1: two containers on Docker's default bridge reach each
// other, the gateway, and are reached from the host; CHECK passes and then
// notices a removed address; DEL leaves nothing behind.
func TestDefaultBridge(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
	c1 := e.Run(list, "ctr-one")
	c2 := e.Run(list, "ctr-two")

	ip1, ip2 := c1.IP(t, "4"), c2.IP(t, "4")
	if !strings.HasPrefix(ip1, "172.17.") || ip1 == ip2 {
		t.Fatalf("got addresses %s and %s, want two distinct ones in 172.17.0.0/16", ip1, ip2)
	}
	if gw := c1.Res.IPs[0].Gateway.String(); gw != "172.17.0.1" {
		t.Fatalf("got gateway %s, want 172.17.0.1", gw)
	}
	nstest.Ping(t, c1.NS, ip2)
	nstest.Ping(t, c2.NS, ip1)
	nstest.Ping(t, c1.NS, "172.17.0.1")
	nstest.Ping(t, e.Host, ip1)
	// loopback ran in the chain too.
	nstest.Ping(t, c1.NS, "127.0.0.1")

	out := c1.NS.MustExec(t, "ip", "-4", "addr", "show", "eth0")
	if !strings.Contains(out, ip1+"/16") {
		t.Fatalf("ip addr in container:\n%s\nwant %s/16", out, ip1)
	}
	routes := c1.NS.MustExec(t, "ip", "route")
	if !strings.Contains(routes, "default via 172.17.0.1 dev eth0") {
		t.Fatalf("container routes:\n%s\nwant default via 172.17.0.1", routes)
	}
	if mac := c1.Res.Interfaces[2].Mac; !strings.Contains(c1.NS.MustExec(t, "ip", "link", "show", "eth0"), mac) {
		t.Fatalf("result MAC %s is not eth0's", mac)
	}
	hostLinks := links(t, e.Host)
	for _, want := range []string{"docker0", c1.Res.Interfaces[1].Name, c2.Res.Interfaces[1].Name} {
		if !strings.Contains(hostLinks, want) {
			t.Fatalf("host links:\n%s\nwant %s", hostLinks, want)
		}
	}
	// The bridge's MAC is pinned (NET_ADDR_SET), so it never follows the
	// lowest port MAC as containers come and go.
	if got := strings.TrimSpace(e.Host.MustExec(t, "cat", "/sys/class/net/docker0/addr_assign_type")); got != "3" {
		t.Fatalf("docker0 addr_assign_type %s, want 3 (set)", got)
	}
	if c1.Res.Interfaces[0].Mac != c2.Res.Interfaces[0].Mac {
		t.Fatalf("bridge MAC changed between ADDs: %s then %s", c1.Res.Interfaces[0].Mac, c2.Res.Interfaces[0].Mac)
	}
	if !strings.Contains(e.Host.MustExec(t, "ip", "-d", "link", "show", c1.Res.Interfaces[1].Name), "hairpin on") {
		t.Fatalf("hairpinMode: host veth has hairpin off")
	}

	ctx := context.Background()
	if err := e.RT.Check(ctx, list, c1.RC); err != nil {
		t.Fatalf("CHECK after ADD: %v", err)
	}
	c2.NS.MustExec(t, "ip", "route", "del", "default")
	if err := e.RT.Check(ctx, list, c2.RC); err == nil || !strings.Contains(err.Error(), "lacks route to 0.0.0.0/0") {
		t.Fatalf("CHECK after removing the default route: got %v, want an error naming 0.0.0.0/0", err)
	}
	c1.NS.MustExec(t, "ip", "addr", "del", ip1+"/16", "dev", "eth0")
	err := e.RT.Check(ctx, list, c1.RC)
	if err == nil || !strings.Contains(err.Error(), "lacks address "+ip1) {
		t.Fatalf("CHECK after removing the address: got %v, want an error naming %s", err, ip1)
	}

	for _, c := range []*nstest.Container{c1, c2} {
		if err := e.RT.Del(ctx, list, c.RC); err != nil {
			t.Fatalf("DEL: %v", err)
		}
		if out, _ := c.NS.Exec("ip", "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
			t.Fatalf("eth0 still in container after DEL:\n%s", out)
		}
	}
	if files := ipamFiles(e, "bridge"); len(files) != 0 {
		t.Fatalf("reservations left after DEL: %v", files)
	}
	for _, c := range []*nstest.Container{c1, c2} {
		if strings.Contains(links(t, e.Host), c.Res.Interfaces[1].Name) {
			t.Fatalf("host veth %s left after DEL", c.Res.Interfaces[1].Name)
		}
	}
}

// Every supported spec version: ADD, CHECK (0.4.0+), DEL twice.
func TestSpecVersions(t *testing.T) {
	for _, v := range []string{"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			e := nstest.NewEnv(t)
			list := e.Conflist(nstest.Example(t, "docker-default.conflist"), nstest.SetVersion(v))
			c := e.Run(list, "ctr-"+strings.ReplaceAll(v, ".", ""))
			if c.Res.IPs[0].Address.IP.To4() == nil {
				t.Fatalf("got %v, want an IPv4 address", c.Res.IPs)
			}
			nstest.Ping(t, e.Host, c.IP(t, "4"))
			ctx := context.Background()
			if v >= "0.4.0" {
				if err := e.RT.Check(ctx, list, c.RC); err != nil {
					t.Fatalf("CHECK: %v", err)
				}
			}
			for i := 0; i < 2; i++ {
				if err := e.RT.Del(ctx, list, c.RC); err != nil {
					t.Fatalf("DEL #%d: %v", i+1, err)
				}
			}
		})
	}
}

// containerd's default config: dual stack on cni0, routes from IPAM.
func TestContainerdDefaultDualStack(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "containerd-default.conflist"))
	c1 := e.Run(list, "cd-one")
	c2 := e.Run(list, "cd-two")
	if !strings.HasPrefix(c1.IP(t, "4"), "10.88.") {
		t.Fatalf("got %v, want 10.88.0.0/16", c1.Res.IPs)
	}
	nstest.Ping(t, c1.NS, c2.IP(t, "4"))
	nstest.Ping(t, c1.NS, c2.IP(t, "6"))
	nstest.Ping(t, c2.NS, c1.Res.IPs[1].Gateway.String())
	routes := c1.NS.MustExec(t, "ip", "-6", "route")
	if !strings.Contains(routes, "default via "+c1.Res.IPs[1].Gateway.String()) {
		t.Fatalf("IPv6 routes:\n%s\nwant default via the gateway", routes)
	}
	if !strings.Contains(e.Host.MustExec(t, "ip", "link", "show", "cni0"), "PROMISC") {
		t.Fatal("promiscMode: cni0 is not promiscuous")
	}
	if err := e.RT.Check(context.Background(), list, c1.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
}

// 32 ADDs at once (32 plugin processes racing for the bridge, the gateway
// address and the IPAM store) give 32 distinct, working addresses.
func TestConcurrentAdds(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
	const n = 32
	ctrs := make([]*nstest.Container, n)
	for i := range ctrs {
		ctrs[i] = &nstest.Container{NS: nstest.NewNS(t, "par")}
		ctrs[i].RC = nstest.Attachment(fmt.Sprintf("par-%02d", i), ctrs[i].NS, "eth0")
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.Res, errs[i] = e.RT.Add(context.Background(), list, c.RC)
		}()
	}
	wg.Wait()
	seen := map[string]string{}
	for i, c := range ctrs {
		if errs[i] != nil {
			t.Fatalf("ADD %d: %v", i, errs[i])
		}
		ip := c.IP(t, "4")
		if other, dup := seen[ip]; dup {
			t.Fatalf("%s handed to both %s and %s", ip, other, c.RC.ContainerID)
		}
		seen[ip] = c.RC.ContainerID
	}
	nstest.Ping(t, ctrs[0].NS, ctrs[n-1].IP(t, "4"))
	for i, c := range ctrs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = e.RT.Del(context.Background(), list, c.RC)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("DEL %d: %v", i, err)
		}
	}
	if files := ipamFiles(e, "bridge"); len(files) != 0 {
		t.Fatalf("reservations left after DEL: %v", files)
	}
}

// GC releases what is not in valid-attachments and keeps the rest.
func TestGC(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
	keep := e.Run(list, "gc-keep")
	gone := e.Run(list, "gc-gone")
	if got := len(ipamFiles(e, "bridge")); got != 2 {
		t.Fatalf("got %d reservations, want 2", got)
	}
	if err := e.RT.GC(context.Background(), list, keep.RC); err != nil {
		t.Fatalf("GC: %v", err)
	}
	files := ipamFiles(e, "bridge")
	if len(files) != 1 || files[0] != keep.IP(t, "4") {
		t.Fatalf("after GC: reservations %v, want only %s (not %s)", files, keep.IP(t, "4"), gone.IP(t, "4"))
	}
	if err := e.RT.Status(context.Background(), list); err != nil {
		t.Fatalf("STATUS: %v", err)
	}
}

// DEL with nothing to delete: no prior ADD, and no netns at all.
func TestDelIdempotent(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
	c := nstest.NewNS(t, "ctr")
	ctx := context.Background()
	for i := 0; i < 2; i++ {
		if err := e.RT.Del(ctx, list, nstest.Attachment("never-added", c, "eth0")); err != nil {
			t.Fatalf("DEL without ADD #%d: %v", i+1, err)
		}
	}
	rc := nstest.Attachment("no-netns", c, "eth0")
	rc.NetNS = ""
	if err := e.RT.Del(ctx, list, rc); err != nil {
		t.Fatalf("DEL without netns: %v", err)
	}
	rc.NetNS = "/run/netns/" + nstest.Prefix() + "-does-not-exist"
	if err := e.RT.Del(ctx, list, rc); err != nil {
		t.Fatalf("DEL with a netns that is gone: %v", err)
	}
}

// A failed ADD leaves nothing behind: not the veth, not the reservation.
func TestFailedAddRollsBack(t *testing.T) {
	e := nstest.NewEnv(t)
	ctx := context.Background()

	t.Run("interface exists", func(t *testing.T) {
		list := e.Conflist(nstest.Example(t, "docker-default.conflist"))
		c := nstest.NewNS(t, "ctr")
		c.MustExec(t, "ip", "link", "add", "eth0", "type", "bridge")
		_, err := e.RT.Add(ctx, list, nstest.Attachment("dup-if", c, "eth0"))
		if err == nil || !strings.Contains(err.Error(), "already exists") {
			t.Fatalf("got %v, want an 'already exists' error", err)
		}
		assertClean(t, e, "bridge")
	})

	t.Run("range full", func(t *testing.T) {
		// A /30 has two usable addresses: 10.9.0.1 is the gateway, so one
		// container fits and the second ADD must fail and undo its veth.
		small := e.Conflist(nstest.Example(t, "docker-default.conflist"), func(m map[string]any) {
			m["name"] = "tiny"
			p := m["plugins"].([]any)[0].(map[string]any)
			p["bridge"] = "tiny0"
			p["ipam"].(map[string]any)["ranges"] = []any{[]any{map[string]any{"subnet": "10.9.0.0/30"}}}
		})
		first := e.Run(small, "fits")
		c := nstest.NewNS(t, "ctr")
		_, err := e.RT.Add(ctx, small, nstest.Attachment("no-room", c, "eth0"))
		if err == nil {
			t.Fatal("second ADD on a full /30 succeeded")
		}
		if out, _ := c.Exec("ip", "link", "show", "eth0"); !strings.Contains(out, "does not exist") {
			t.Fatalf("eth0 left in the container after a failed ADD:\n%s", out)
		}
		if files := ipamFiles(e, "tiny"); len(files) != 1 || files[0] != first.IP(t, "4") {
			t.Fatalf("reservations %v, want only %s", files, first.IP(t, "4"))
		}
	})
}

func assertClean(t *testing.T, e *nstest.Env, network string) {
	t.Helper()
	if files := ipamFiles(e, network); len(files) != 0 {
		t.Fatalf("reservations left after a failed ADD: %v", files)
	}
	for _, l := range strings.Split(links(t, e.Host), "\n") {
		if strings.Contains(l, "veth") {
			t.Fatalf("veth left in host after a failed ADD: %s", l)
		}
	}
}

// ipMasq: a container's traffic to an outside network leaves with the
// host's address.
func TestMasquerade(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			e := nstest.NewEnv(t)
			outside := nstest.NewNS(t, "out")
			nstest.Veth(t, e.Host, "uplink", "192.0.2.1/24", outside, "eth0", "192.0.2.2/24")
			list := e.Conflist(nstest.Example(t, "docker-default.conflist"), nstest.SetField(0, "ipMasqBackend", backend))
			c := e.Run(list, "masq-"+backend)

			// A TCP server in the outside namespace that reports who called.
			peer := make(chan string, 1)
			var ln net.Listener
			if err := outside.Do(func(ns.NetNS) error {
				var err error
				ln, err = net.Listen("tcp4", "192.0.2.2:8080")
				return err
			}); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					peer <- "accept: " + err.Error()
					return
				}
				peer <- conn.RemoteAddr().(*net.TCPAddr).IP.String()
				conn.Close()
			}()
			if out, err := c.NS.Exec("nc", "-z", "-w", "2", "192.0.2.2", "8080"); err != nil {
				t.Fatalf("container cannot reach the outside: %v\n%s", err, out)
			}
			if got := <-peer; got != "192.0.2.1" {
				t.Fatalf("outside saw source %s, want the host's 192.0.2.1", got)
			}
			if err := e.RT.Check(context.Background(), list, c.RC); err != nil {
				t.Fatalf("CHECK: %v", err)
			}
		})
	}
}

// execIPAM: host-local by exec, as the spec's delegation describes, rather
// than in-process: ADD, CHECK, GC and DEL give the same outcome.
func TestExecIPAM(t *testing.T) {
	e := nstest.NewEnv(t)
	list := e.Conflist(nstest.Example(t, "docker-default.conflist"), nstest.SetField(0, "execIPAM", true))
	c1 := e.Run(list, "exec-one")
	c2 := e.Run(list, "exec-two")
	nstest.Ping(t, c1.NS, c2.IP(t, "4"))
	ctx := context.Background()
	if err := e.RT.Check(ctx, list, c1.RC); err != nil {
		t.Fatalf("CHECK: %v", err)
	}
	if err := e.RT.GC(ctx, list, c1.RC); err != nil {
		t.Fatalf("GC: %v", err)
	}
	if files := ipamFiles(e, "bridge"); len(files) != 1 || files[0] != c1.IP(t, "4") {
		t.Fatalf("after GC: %v, want only %s", files, c1.IP(t, "4"))
	}
	if err := e.RT.Del(ctx, list, c1.RC); err != nil {
		t.Fatalf("DEL: %v", err)
	}
	if files := ipamFiles(e, "bridge"); len(files) != 0 {
		t.Fatalf("after DEL: %v", files)
	}
}
