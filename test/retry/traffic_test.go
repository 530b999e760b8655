package retry_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"

	"github.com/berthnet/berth/internal/nstest"
	"github.com/berthnet/berth/internal/sandbox"
)

const (
	hostOutIP = "192.0.2.1" // the private host's "public" address
	outIP     = "192.0.2.2" // a machine outside, reached through the host
)

// outside links a namespace "out" to e's host on 192.0.2.0/24 with
// forwarding on, and serves on outIP:7000 a TCP echo of the peer's address:
// what the outside sees as the source of a container's connection.
func outside(t *testing.T, e *nstest.Env) *nstest.NS {
	t.Helper()
	out := nstest.NewNS(t, "out")
	nstest.Veth(t, e.Host, "up0", hostOutIP+"/24", out, "eth0", outIP+"/24")
	e.Host.MustExec(t, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	var l net.Listener
	if err := out.Do(func(ns.NetNS) (err error) { l, err = net.Listen("tcp", outIP+":7000"); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
			_, _ = io.WriteString(c, host)
			c.Close()
		}
	}()
	return out
}

// sourceSeenOutside connects from n to the outside echo and returns the
// address the outside saw.
func sourceSeenOutside(n *nstest.NS) (string, error) {
	var c net.Conn
	err := n.Do(func(ns.NetNS) (err error) {
		c, err = net.DialTimeout("tcp", outIP+":7000", 2*time.Second)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

// serveHTTP answers "hello from <id>" on :80 inside n.
func serveHTTP(t *testing.T, n *nstest.NS, id string) {
	t.Helper()
	var l net.Listener
	if err := n.Do(func(ns.NetNS) (err error) { l, err = net.Listen("tcp", ":80"); return err }); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s", id)
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { srv.Close() })
}

// httpGet fetches url from inside n (nstest.HTTPGet).
func httpGet(n *nstest.NS, url string) (string, error) {
	return nstest.HTTPGet(n, url, 3*time.Second)
}

// runtimeWithCache is a libcni runtime in e's host whose result cache is
// dir, so a test can keep a copy of an attachment's cached result and
// replay a DEL with it later.
func runtimeWithCache(t *testing.T, e *nstest.Env, dir string) *nstest.Runtime {
	t.Helper()
	return &nstest.Runtime{Runtime: sandbox.NewRuntime(e.Host.NS, dir, nstest.CNIPath(t)), Host: e.Host}
}

func nftList(t testing.TB, host *nstest.NS) string {
	t.Helper()
	out, err := host.Exec("nft", "list", "ruleset")
	if err != nil && !strings.Contains(out, "No such file") {
		t.Fatal(err)
	}
	return out
}
