package portmap_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
)

const (
	hostOutIP = "192.0.2.1" // the private host's "public" address
	outIP     = "192.0.2.2" // an outside client
	bridgeGW  = "172.17.0.1"
)

// env is a private host namespace running the plugins, linked to an
// outside namespace on 192.0.2.0/24.
type env struct {
	*nstest.Env
	out *nstest.NS
}

func newEnv(t *testing.T) *env {
	t.Helper()
	e := &env{Env: nstest.NewEnv(t), out: nstest.NewNS(t, "out")}
	nstest.Veth(t, e.Host, "up0", hostOutIP+"/24", e.out, "eth0", outIP+"/24")
	e.Host.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return e
}

// list is the docker-bridge-ports example with per-test state and the
// given portmap backend.
func (e *env) list(t *testing.T, backend string) *libcni.NetworkConfigList {
	return nstest.Conflist(t, nstest.Example(t, "docker-bridge-ports.conflist"), nstest.DataDir(e.DataDir), setPortmapBackend(backend))
}

type mapping struct {
	HostPort      int    `json:"hostPort"`
	ContainerPort int    `json:"containerPort"`
	Protocol      string `json:"protocol"`
	HostIP        string `json:"hostIP,omitempty"`
}

type container struct {
	id  string
	ns  *nstest.NS
	rc  *libcni.RuntimeConf
	res *current.Result
	ip  string
}

func (e *env) newContainer(t *testing.T, id string, maps ...mapping) *container {
	t.Helper()
	c := &container{id: id, ns: nstest.NewNS(t, "c")}
	c.rc = nstest.Attachment(id, c.ns, "eth0")
	if len(maps) > 0 {
		c.rc.CapabilityArgs = map[string]any{"portMappings": maps}
	}
	return c
}

func (e *env) add(t *testing.T, list *libcni.NetworkConfigList, c *container) error {
	t.Helper()
	res, err := e.RT.Add(context.Background(), list, c.rc)
	if err != nil {
		return err
	}
	c.res = res
	c.ip = res.IPs[0].Address.IP.String()
	t.Cleanup(func() { _ = e.RT.Del(context.Background(), list, c.rc) })
	return nil
}

// serve starts, inside c, an HTTP server on :80 answering "hello from
// <id>" and a UDP responder on :53 answering "pong <id>".
func (c *container) serve(t *testing.T) {
	t.Helper()
	var l net.Listener
	var u net.PacketConn
	err := c.ns.Do(func(ns.NetNS) (err error) {
		if l, err = net.Listen("tcp", ":80"); err != nil {
			return err
		}
		u, err = net.ListenPacket("udp", ":53")
		return err
	})
	if err != nil {
		t.Fatalf("servers in %s: %v", c.id, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", c.id)
	})}
	go func() { _ = srv.Serve(l) }()
	go func() {
		buf := make([]byte, 512)
		for {
			_, from, err := u.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = u.WriteTo([]byte("pong "+c.id), from)
		}
	}()
	t.Cleanup(func() { srv.Close(); u.Close() })
}

// httpGet fetches url from inside n (nstest.HTTPGet).
func httpGet(n *nstest.NS, url string) (string, error) {
	return nstest.HTTPGet(n, url, 3*time.Second)
}

// udpConn is a UDP socket made inside n, bound to a fixed local address so
// that conntrack sees one flow across sends.
func udpConn(t *testing.T, n *nstest.NS, local string) net.PacketConn {
	t.Helper()
	var u net.PacketConn
	if err := n.Do(func(ns.NetNS) (err error) { u, err = net.ListenPacket("udp", local); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func udpAsk(u net.PacketConn, addr string) (string, error) {
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return "", err
	}
	if _, err := u.WriteTo([]byte("ping"), ua); err != nil {
		return "", err
	}
	_ = u.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	n, _, err := u.ReadFrom(buf)
	return string(buf[:n]), err
}

func wantHTTP(t *testing.T, what string, n *nstest.NS, url, want string) {
	t.Helper()
	got, err := httpGet(n, url)
	if err != nil || got != want {
		t.Errorf("%s: GET %s: got %q, %v; want %q", what, url, got, err, want)
	}
}

func wantNoHTTP(t *testing.T, what string, n *nstest.NS, url string) {
	t.Helper()
	if got, err := httpGet(n, url); err == nil {
		t.Errorf("%s: GET %s: got %q; want failure", what, url, got)
	}
}
