package dnsname_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/nstest"
)

// Upstream is the fake resolver every test forwards to: it runs in its own
// namespace, linked to the host namespace, and knows *.example.test.
const (
	upstreamAddr = "192.0.2.53"
	forwardedIP  = "203.0.113.7"
)

type env struct {
	*nstest.Env
}

func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{Env: nstest.NewEnv(t)}
	// Whatever happens, no sidecar outlives the test (it would also keep
	// the host namespace alive).
	t.Cleanup(func() {
		if pid := e.sidecarPID(); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	startUpstream(t, e.Host)
	return e
}

// startUpstream runs the fake upstream in a namespace of its own, reached
// from the host namespace over a veth.
func startUpstream(t testing.TB, host *nstest.NS) {
	t.Helper()
	up := nstest.NewNS(t, "up")
	nstest.Veth(t, host, "up0", "192.0.2.1/24", up, "eth0", upstreamAddr+"/24")
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		if strings.HasSuffix(q.Name, ".example.test.") && q.Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(forwardedIP)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	err := up.Do(func(ns.NetNS) (err error) {
		if pc, err = net.ListenPacket("udp4", upstreamAddr+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", upstreamAddr+":53")
		return err
	})
	if err != nil {
		t.Fatalf("fake upstream: %v", err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
}

// network loads the example conflist as network name, on its own bridge
// and subnets (index n picks 10.89.n.0/24 and fd89:0:0:n::/64), forwarding
// to the fake upstream.
func (e *env) network(name string, n int, patches ...func(map[string]any)) *libcni.NetworkConfigList {
	e.T.Helper()
	base := []func(map[string]any){
		func(m map[string]any) {
			m["name"] = name
			pl := m["plugins"].([]any)
			br := pl[0].(map[string]any)
			br["bridge"] = nstest.UniqueName("br")
			br["ipam"].(map[string]any)["ranges"] = []any{
				[]any{map[string]any{"subnet": fmt.Sprintf("10.89.%d.0/24", n), "gateway": fmt.Sprintf("10.89.%d.1", n)}},
				[]any{map[string]any{"subnet": fmt.Sprintf("fd89:0:0:%d::/64", n), "gateway": fmt.Sprintf("fd89:0:0:%d::1", n)}},
			}
			pl[1].(map[string]any)["upstreams"] = []any{upstreamAddr}
		},
	}
	return e.Conflist(nstest.Example(e.T, "podman-dnsname.conflist"), append(base, patches...)...)
}

type container struct {
	id, name string
	ns       *nstest.NS
	rc       *libcni.RuntimeConf
	res      *current.Result
}

// attach creates a container namespace and runs ADD with the container's
// name in K8S_POD_NAME and aliases for the list's network; DEL runs again
// on cleanup (a second DEL after the test's own: idempotence everywhere).
func (e *env) attach(list *libcni.NetworkConfigList, name string, aliases ...string) *container {
	e.T.Helper()
	c, err := e.tryAttach(list, name, aliases...)
	if err != nil {
		e.T.Fatalf("ADD %s: %v", name, err)
	}
	return c
}

func (e *env) tryAttach(list *libcni.NetworkConfigList, name string, aliases ...string) (*container, error) {
	id := make([]byte, 32)
	_, _ = rand.Read(id)
	c := &container{id: hex.EncodeToString(id), name: name, ns: nstest.NewNS(e.T, "ctr")}
	c.rc = nstest.Attachment(c.id, c.ns, "eth0")
	c.rc.Args = [][2]string{{"K8S_POD_NAME", name}}
	if aliases != nil {
		c.rc.CapabilityArgs = map[string]any{"aliases": map[string][]string{list.Name: aliases}}
	}
	e.T.Cleanup(func() {
		if err := e.RT.Del(context.Background(), list, c.rc); err != nil {
			e.T.Errorf("cleanup DEL %s: %v", name, err)
		}
	})
	res, err := e.RT.Add(context.Background(), list, c.rc)
	c.res = res
	return c, err
}

func (e *env) del(list *libcni.NetworkConfigList, c *container) {
	e.T.Helper()
	if err := e.RT.Del(context.Background(), list, c.rc); err != nil {
		e.T.Fatalf("DEL %s: %v", c.name, err)
	}
}

// ip returns the container's address of the family ("4" or "6").
func (c *container) ip(t testing.TB, fam string) string {
	t.Helper()
	for _, ipc := range c.res.IPs {
		if (ipc.Address.IP.To4() != nil) == (fam == "4") {
			return ipc.Address.IP.String()
		}
	}
	t.Fatalf("no IPv%s address in result %v", fam, c.res)
	return ""
}

// nameserver is the first nameserver the result reports.
func (c *container) nameserver(t testing.TB) string {
	t.Helper()
	if len(c.res.DNS.Nameservers) == 0 {
		t.Fatalf("result of %s has no dns.nameservers: %+v", c.name, c.res.DNS)
	}
	return c.res.DNS.Nameservers[0]
}

// ask sends one query from inside the container to the nameserver its
// result reports.
func (c *container) ask(t testing.TB, proto, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	server := net.JoinHostPort(c.nameserver(t), "53")
	var resp *dns.Msg
	err := c.ns.Do(func(ns.NetNS) (err error) {
		cl := &dns.Client{Net: proto, Timeout: 3 * time.Second}
		resp, _, err = cl.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype), server)
		return err
	})
	return resp, err
}

// lookup asks and renders "RCODE answer,answer" (answers sorted).
func (c *container) lookup(t testing.TB, proto, name string, qtype uint16) string {
	t.Helper()
	resp, err := c.ask(t, proto, name, qtype)
	if err != nil {
		t.Fatalf("%s %s from %s: %v", name, dns.TypeToString[qtype], c.name, err)
	}
	var out []string
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, rr.A.String())
		case *dns.AAAA:
			out = append(out, rr.AAAA.String())
		case *dns.PTR:
			out = append(out, rr.Ptr)
		}
	}
	sort.Strings(out)
	return strings.TrimSpace(dns.RcodeToString[resp.Rcode] + " " + strings.Join(out, ","))
}

func (e *env) sidecarDir() string { return filepath.Join(e.DataDir, "dnsname") }

// sidecarPID reads the running sidecar's pid file (0 when there is none).
func (e *env) sidecarPID() int {
	b, err := os.ReadFile(filepath.Join(e.sidecarDir(), "sidecar.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// pidfd opens a handle on pid so that its exit can be waited for.
func pidfd(t testing.TB, pid int) int {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// waitExit blocks until the process behind fd has exited (bounded by
// timeout), without polling: a pidfd becomes readable on exit.
func waitExit(fd int, timeout time.Duration) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, int(timeout/time.Millisecond))
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("still running")
		}
		return nil
	}
}
