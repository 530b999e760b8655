package networks_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

// The private host's uplink and the "outside" namespace behind it. The
// outside has no route to any container subnet: it can only answer a
// container whose traffic was masqueraded to hostUplink.
const (
	hostUplink = "192.0.2.1"
	outsideIP  = "192.0.2.2"
)

// world is one test's private host (nstest.Env) plus an outside namespace
// linked to it.
type world struct {
	*nstest.Env
	out *nstest.NS
}

func newWorld(t *testing.T) *world {
	t.Helper()
	w := &world{Env: nstest.NewEnv(t), out: nstest.NewNS(t, "out")}
	nstest.Veth(t, w.Host, "uplink", hostUplink+"/24", w.out, "eth0", outsideIP+"/24")
	return w
}

// network loads a conf-example; when name is not empty the network is
// renamed and gets a bridge of its own (two networks from one example).
func (w *world) network(example, name string, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	w.T.Helper()
	if name != "" {
		patches = append([]func(map[string]any){rename(name)}, patches...)
	}
	return w.Conflist(nstest.Example(w.T, example), patches...)
}

// rename sets the network's name and its bridge's name (br-<name>).
func rename(name string) func(map[string]any) {
	return func(m map[string]any) {
		m["name"] = name
		m["plugins"].([]any)[0].(map[string]any)["bridge"] = "br-" + name
	}
}

// publish is a Run option: `-p hostPort:containerPort/tcp`.
func publish(hostPort, containerPort int) func(*libcni.RuntimeConf) {
	return func(rc *libcni.RuntimeConf) {
		rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
			{"hostPort": hostPort, "containerPort": containerPort, "protocol": "tcp"},
		}}
	}
}

// gateway is the gateway the result reports for the first IPv4 address.
func gateway(t testing.TB, res *current.Result) string {
	t.Helper()
	for _, ipc := range res.IPs {
		if ipc.Address.IP.To4() != nil {
			if ipc.Gateway == nil {
				t.Fatalf("result has no gateway for %s: %v", ipc.Address.String(), res)
			}
			return ipc.Gateway.String()
		}
	}
	t.Fatalf("no IPv4 address in result %v", res)
	return ""
}

// serve runs a TCP server on addr (":80") inside n that answers every
// connection with "<label> <the caller's address>\n"; it stops on cleanup.
// The socket is listening when serve returns: no waiting needed.
func serve(t testing.TB, n *nstest.NS, addr, label string) {
	t.Helper()
	var ln net.Listener
	if err := n.Do(func(ns.NetNS) (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.Name, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			fmt.Fprintf(c, "%s %s\n", label, host)
			c.Close()
		}
	}()
}

// dial connects from inside n to addr ("ip:port") and returns the server's
// line ("<label> <source address it saw>"). Dropped traffic is an error
// after a short timeout.
func dial(n *nstest.NS, addr string) (string, error) {
	var c net.Conn
	if err := n.Do(func(ns.NetNS) (err error) {
		c, err = net.DialTimeout("tcp4", addr, time.Second)
		return err
	}); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// reach is one expectation of connectivity: ping and, when port is set,
// a TCP connection to a server started with serve.
type reach struct {
	what string
	from *nstest.NS
	to   string
	port int    // 0: ping only
	want string // the server's answer when reachable ("" = any)
	ok   bool
}

// expect checks every case, reporting each mismatch with got before want.
func expect(t *testing.T, cases []reach) {
	t.Helper()
	for _, c := range cases {
		_, err := c.from.Exec("ping", "-c", "1", "-W", "1", c.to)
		if got := err == nil; got != c.ok {
			t.Errorf("%s: ping %s: got reachable=%v, want %v", c.what, c.to, got, c.ok)
		}
		if c.port == 0 {
			continue
		}
		addr := net.JoinHostPort(c.to, fmt.Sprint(c.port))
		got, err := dial(c.from, addr)
		switch {
		case c.ok && err != nil:
			t.Errorf("%s: TCP %s: got %v, want a connection", c.what, addr, err)
		case c.ok && c.want != "" && got != c.want:
			t.Errorf("%s: TCP %s: got answer %q, want %q", c.what, addr, got, c.want)
		case !c.ok && err == nil:
			t.Errorf("%s: TCP %s: got answer %q, want no connection", c.what, addr, got)
		}
	}
}

// check runs CHECK for an attachment.
func check(t *testing.T, w *world, list *libcni.NetworkConfigList, rc *libcni.RuntimeConf) {
	t.Helper()
	if err := w.RT.Check(context.Background(), list, rc); err != nil {
		t.Errorf("CHECK %s/%s on %s: got %v, want success", rc.ContainerID, rc.IfName, list.Name, err)
	}
}

// subnetOf is the network address of an IPv4 result ("172.17.0.0/16").
func subnetOf(t testing.TB, res *current.Result) string {
	t.Helper()
	for _, ipc := range res.IPs {
		if ipc.Address.IP.To4() != nil {
			return (&net.IPNet{IP: ipc.Address.IP.Mask(ipc.Address.Mask), Mask: ipc.Address.Mask}).String()
		}
	}
	t.Fatalf("no IPv4 address in result %v", res)
	return ""
}
