package security

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"

	"github.com/berthnet/berth/internal/nstest"
)

const (
	upstream   = "192.0.2.2" // the fake upstream, in the outside namespace
	forwardedA = "198.51.100.7"
)

// fakeUpstream answers every A query with forwardedA and records the
// names it was asked.
type fakeUpstream struct {
	mu    sync.Mutex
	asked []string
}

func (u *fakeUpstream) seen(name string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, a := range u.asked {
		if strings.EqualFold(a, dns.Fqdn(name)) {
			return true
		}
	}
	return false
}

func startUpstream(t testing.TB, n *nstest.NS) *fakeUpstream {
	t.Helper()
	u := &fakeUpstream{}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		u.mu.Lock()
		u.asked = append(u.asked, q.Name)
		u.mu.Unlock()
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(forwardedA)})
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	if err := n.Do(func(ns.NetNS) (err error) {
		pc, err = net.ListenPacket("udp4", upstream+":53")
		return err
	}); err != nil {
		t.Fatalf("fake upstream: %v", err)
	}
	s := &dns.Server{PacketConn: pc, Handler: h}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
	return u
}

// ask sends one A query from n to server:53 over UDP; a nil reply means
// none came.
func ask(t testing.TB, n *nstest.NS, server, name string) *dns.Msg {
	t.Helper()
	return askFrom(t, n, "", server, name)
}

// askFrom is ask with the query's source address bound to src.
func askFrom(t testing.TB, n *nstest.NS, src, server, name string) *dns.Msg {
	t.Helper()
	var resp *dns.Msg
	_ = n.Do(func(ns.NetNS) error {
		c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
		if src != "" {
			c.Dialer = &net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.UDPAddr{IP: net.ParseIP(src)}}
		}
		resp, _, _ = c.Exchange(new(dns.Msg).SetQuestion(dns.Fqdn(name), dns.TypeA), net.JoinHostPort(server, "53"))
		return nil
	})
	return resp
}

func answers(m *dns.Msg) string {
	if m == nil {
		return "no reply"
	}
	var out []string
	for _, rr := range m.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return dns.RcodeToString[m.Rcode] + " " + strings.Join(out, ",")
}

// TestSidecarAudience: the DNS sidecar answers the containers of its
// networks (their names, and other names through the upstream), and no
// one else: a host outside every network that can route to the gateway
// gets REFUSED or nothing, for a container's name and for a name it would
// forward (not an open resolver: the upstream never sees the outsider's
// query); a container of another network does not learn this network's
// names through this network's gateway.
func TestSidecarAudience(t *testing.T) {
	e := nstest.NewEnv(t)
	t.Cleanup(func() { killSidecars(e.Host) })
	out := nstest.NewNS(t, "out")
	nstest.Veth(t, e.Host, "uplink", "192.0.2.1/24", out, "eth0", upstream+"/24")
	out.MustExec(t, "ip", "route", "add", "10.44.0.0/16", "via", "192.0.2.1")
	up := startUpstream(t, out)
	netConf := func(name string, n int) []byte {
		return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
			{"type":"bridge","bridge":%q,"isGateway":true,"isDefaultGateway":true,
			 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.44.%d.0/24"}]]}},
			{"type":"dnsname","upstreams":[%q]}]}`, name, nstest.UniqueName("br"), n, upstream))
	}
	a := e.Conflist(netConf("dnsa", 1))
	b := e.Conflist(netConf("dnsb", 2))
	a1, a2 := e.Run(a, "a1"), e.Run(a, "a2")
	b1 := e.Run(b, "b1")
	gwA, gwB := "10.44.1.1", "10.44.2.1"

	// Controls: members get names and forwarding.
	if got := answers(ask(t, a1.NS, gwA, "a2")); got != "NOERROR "+a2.IP(t, "4") {
		t.Fatalf("a1 asks a2 on its gateway: got %q", got)
	}
	if got := answers(ask(t, a1.NS, gwA, "member.example.test")); got != "NOERROR "+forwardedA || !up.seen("member.example.test") {
		t.Fatalf("a1 asks an outside name: got %q (upstream asked: %v)", got, up.seen("member.example.test"))
	}
	if got := answers(ask(t, b1.NS, gwB, "b1")); got != "NOERROR "+b1.IP(t, "4") {
		t.Fatalf("b1 asks b1 on its gateway: got %q", got)
	}

	refusedOrNothing := func(m *dns.Msg) bool { return m == nil || m.Rcode == dns.RcodeRefused && len(m.Answer) == 0 }
	// The host itself may ask (a query to its own address comes from that
	// address), as `dig @gateway name` on a Docker host does.
	if got := answers(ask(t, e.Host, gwA, "a1")); got != "NOERROR "+a1.IP(t, "4") {
		t.Fatalf("the host asks a1 on a's gateway: got %q", got)
	}

	for _, tc := range []struct {
		what     string
		from     *nstest.NS
		src      string
		server   string
		name     string
		noAnswer func(*dns.Msg) bool
	}{
		{"outsider asks a container's name", out, "", gwA, "a1", refusedOrNothing},
		{"outsider asks the fqdn", out, "", gwA, "a1.dns.podman", refusedOrNothing},
		{"outsider asks for recursion", out, "", gwA, "outsider.example.test", refusedOrNothing},
		{"outsider asks on the other gateway", out, "", gwB, "outsider2.example.test", refusedOrNothing},
		{"a query from the host's uplink address", e.Host, "192.0.2.1", gwA, "a1", refusedOrNothing},
		{"a container of network b asks a's gateway for a's name", b1.NS, "", gwA, "a1",
			func(m *dns.Msg) bool { return m == nil || !strings.Contains(answers(m), a1.IP(t, "4")) }},
		{"a container of network b asks its own gateway for a's name", b1.NS, "", gwB, "a1",
			func(m *dns.Msg) bool { return m == nil || !strings.Contains(answers(m), a1.IP(t, "4")) }},
	} {
		m := askFrom(t, tc.from, tc.src, tc.server, tc.name)
		if !tc.noAnswer(m) {
			t.Errorf("%s (%s at %s): got %q, want no answer", tc.what, tc.name, tc.server, answers(m))
		}
	}
	for _, n := range []string{"outsider.example.test", "outsider2.example.test"} {
		if up.seen(n) {
			t.Errorf("the upstream was asked %s for an outsider: the sidecar is an open resolver", n)
		}
	}
}
