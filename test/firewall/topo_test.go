package firewall_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/containernetworking/plugins/pkg/ns"
)

// topo is a container namespace on 10.88.0.0/16 behind a private "host"
// namespace that routes to an "outside" namespace on 192.0.2.0/24. The
// outside has no route back to 10.88.0.0/16, so a container's connection
// to it only completes when the host masquerades it.
type topo struct {
	*nstest.Env
	ctr, ctr2, out *nstest.NS
}

const (
	ctrIP     = "10.88.0.5"
	ctr2IP    = "10.88.0.6"
	hostCtrIP = "10.88.0.1"
	hostOutIP = "192.0.2.1"
	outIP     = "192.0.2.2"
)

func newTopo(t *testing.T) *topo {
	t.Helper()
	tp := &topo{
		Env:  nstest.NewEnv(t),
		ctr:  nstest.NewNS(t, "ctr"),
		ctr2: nstest.NewNS(t, "ctr2"),
		out:  nstest.NewNS(t, "out"),
	}
	tp.Host.MustExec(t, "ip", "link", "add", "br0", "type", "bridge")
	tp.Host.MustExec(t, "ip", "addr", "add", hostCtrIP+"/16", "dev", "br0")
	tp.Host.MustExec(t, "ip", "link", "set", "br0", "up")
	for i, c := range []struct {
		ns *nstest.NS
		ip string
	}{{tp.ctr, ctrIP}, {tp.ctr2, ctr2IP}} {
		hostIf := []string{"vc1", "vc2"}[i]
		nstest.Veth(t, tp.Host, hostIf, "", c.ns, "eth0", c.ip+"/16")
		tp.Host.MustExec(t, "ip", "link", "set", hostIf, "master", "br0")
		c.ns.MustExec(t, "ip", "route", "add", "default", "via", hostCtrIP)
	}
	nstest.Veth(t, tp.Host, "up0", hostOutIP+"/24", tp.out, "eth0", outIP+"/24")
	tp.Host.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return tp
}

// echoPeer serves on addr inside n: every connection gets back the address
// it came from, as the server saw it.
func echoPeer(t *testing.T, n *nstest.NS, addr string) string {
	t.Helper()
	var l net.Listener
	err := n.Do(func(ns.NetNS) (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = c.Write([]byte(host + "\n"))
			c.Close()
		}
	}()
	return l.Addr().String()
}

// seenAs connects from n to addr and returns the source address the server
// saw, or an error when the connection did not complete.
func seenAs(n *nstest.NS, addr string) (string, error) {
	var got string
	err := n.Do(func(ns.NetNS) error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		got = strings.TrimSpace(line)
		return err
	})
	return got, err
}

// inNS runs f on a thread inside n: the backends act on the calling
// thread's namespace.
func inNS(t *testing.T, n *nstest.NS, f func() error) error {
	t.Helper()
	return n.Do(func(ns.NetNS) error { return f() })
}
