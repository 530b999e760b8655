package nameserver

import (
	"fmt"
	"log"
	"net"
	"net/netip"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startServer serves h on 127.0.0.1 with a free port and stops it on
// cleanup. It returns the address once UDP and TCP are both serving.
func startServer(t testing.TB, h dns.Handler) netip.AddrPort {
	t.Helper()
	started := make(chan netip.AddrPort, 1)
	s := &Server{Handler: h, ErrorLog: log.New(os.Stderr, "dns: ", 0), NotifyStartedFunc: func(a netip.AddrPort) { started <- a }}
	if err := s.Listen([]netip.Addr{netip.MustParseAddr("127.0.0.1")}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	return <-started
}

// fakeUpstream answers every name under "test." with 203.0.113.7 and
// counts the queries it got.
func fakeUpstream(t testing.TB) (netip.AddrPort, *atomic.Int64) {
	var n atomic.Int64
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		n.Add(1)
		m := new(dns.Msg).SetReply(r)
		if strings.HasSuffix(r.Question[0].Name, "test.") {
			m.Answer = append(m.Answer, &dns.A{Hdr: hdr(r.Question[0].Name, dns.TypeA), A: net.IPv4(203, 0, 113, 7)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})
	return startServer(t, h), &n
}

// blackhole is an upstream that reads queries and never answers.
func blackhole(t testing.TB) netip.AddrPort {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, x := range s {
		out = append(out, netip.MustParsePrefix(x))
	}
	return out
}

var gw = []netip.Addr{netip.MustParseAddr("127.0.0.1")}

func testTable(up, dead netip.AddrPort) *Table {
	t := NewTable()
	n1 := Network{Name: "net1", Domain: "dns.podman.", Upstreams: []netip.AddrPort{dead, up}}
	t.Set(n1, Record{Key: "a@eth0", Names: []string{"web", "aaaaaaaaaaaa"}, Aliases: []string{"svc"}, Addrs: pfx("127.0.1.2/24", "fd00:1::2/64"), Gateways: gw})
	t.Set(n1, Record{Key: "b@eth0", Names: []string{"db"}, Aliases: []string{"svc", "Store.Example"}, Addrs: pfx("127.0.1.3/24"), Gateways: gw})
	t.Set(Network{Name: "net2", Domain: "dns.podman"}, Record{Key: "c@eth0", Names: []string{"other"}, Addrs: pfx("127.0.2.2/24"), Gateways: gw})
	t.Set(Network{Name: "net3", Domain: "internal.test", Internal: true, Upstreams: []netip.AddrPort{up}}, Record{Key: "d@eth0", Names: []string{"secret"}, Addrs: pfx("127.0.3.2/24"), Gateways: gw})
	return t
}

func query(t testing.TB, server netip.AddrPort, src, proto, name string, qtype uint16) (*dns.Msg, error) {
	t.Helper()
	var local net.Addr
	if proto == "tcp" {
		local = &net.TCPAddr{IP: net.ParseIP(src)}
	} else {
		local = &net.UDPAddr{IP: net.ParseIP(src)}
	}
	c := &dns.Client{Net: proto, Timeout: 5 * time.Second, Dialer: &net.Dialer{LocalAddr: local, Timeout: 5 * time.Second}}
	m := new(dns.Msg).SetQuestion(dns.Fqdn(name), qtype)
	resp, _, err := c.Exchange(m, server.String())
	return resp, err
}

// answers renders the answer section as sorted "TYPE value" strings.
func answers(m *dns.Msg) []string {
	var out []string
	for _, rr := range m.Answer {
		switch rr := rr.(type) {
		case *dns.A:
			out = append(out, "A "+rr.A.String())
		case *dns.AAAA:
			out = append(out, "AAAA "+rr.AAAA.String())
		case *dns.PTR:
			out = append(out, "PTR "+rr.Ptr)
		default:
			out = append(out, rr.String())
		}
	}
	sort.Strings(out)
	return out
}

func TestResolver(t *testing.T) {
	up, hits := fakeUpstream(t)
	dead := blackhole(t)
	rs := &Resolver{Table: testTable(up, dead), Forwarder: &Forwarder{Stagger: 50 * time.Millisecond}, ErrorLog: log.New(os.Stderr, "resolver: ", 0)}
	srv := startServer(t, rs)

	tests := []struct {
		name  string
		src   string
		proto string
		q     string
		qtype uint16
		rcode int
		want  string // space-joined answers, "" for none
	}{
		{"short name", "127.0.1.9", "udp", "web", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.2"},
		{"fqdn", "127.0.1.9", "udp", "web.dns.podman", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.2"},
		{"case-insensitive", "127.0.1.9", "udp", "WeB.DNS.Podman", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.2"},
		{"short container id", "127.0.1.9", "udp", "aaaaaaaaaaaa", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.2"},
		{"aaaa", "127.0.1.9", "udp", "web", dns.TypeAAAA, dns.RcodeSuccess, "AAAA fd00:1::2"},
		{"nodata", "127.0.1.9", "udp", "db", dns.TypeAAAA, dns.RcodeSuccess, ""},
		{"shared alias gets all", "127.0.1.9", "udp", "svc", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.2,A 127.0.1.3"},
		{"dotted alias", "127.0.1.9", "udp", "store.example", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.3"},
		{"tcp", "127.0.1.9", "tcp", "db.dns.podman", dns.TypeA, dns.RcodeSuccess, "A 127.0.1.3"},
		{"ptr v4", "127.0.1.9", "udp", "3.1.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeSuccess, "PTR db.dns.podman."},
		{"ptr v6", "127.0.1.9", "udp", mustReverse("fd00:1::2"), dns.TypePTR, dns.RcodeSuccess, "PTR web.dns.podman."},
		{"ptr unknown in subnet", "127.0.1.9", "udp", "99.1.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, ""},
		{"ptr of other network hidden", "127.0.1.9", "udp", "2.2.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeNameError, ""},
		{"other network hidden", "127.0.1.9", "udp", "other", dns.TypeA, dns.RcodeNameError, ""},
		{"other network hidden fqdn", "127.0.1.9", "udp", "other.dns.podman", dns.TypeA, dns.RcodeNameError, ""},
		{"other network sees its own", "127.0.2.9", "udp", "other", dns.TypeA, dns.RcodeSuccess, "A 127.0.2.2"},
		{"and not ours", "127.0.2.9", "udp", "web", dns.TypeA, dns.RcodeNameError, ""},
		{"unknown in domain", "127.0.1.9", "udp", "nope.dns.podman", dns.TypeA, dns.RcodeNameError, ""},
		{"forwarded past a dead upstream", "127.0.1.9", "udp", "www.example.test", dns.TypeA, dns.RcodeSuccess, "A 203.0.113.7"},
		{"forwarded tcp", "127.0.1.9", "tcp", "www.example.test", dns.TypeA, dns.RcodeSuccess, "A 203.0.113.7"},
		{"forwarded nxdomain", "127.0.1.9", "udp", "www.example.org", dns.TypeA, dns.RcodeNameError, ""},
		{"internal refuses", "127.0.3.9", "udp", "www.example.test", dns.TypeA, dns.RcodeRefused, ""},
		{"internal own names", "127.0.3.9", "udp", "secret.internal.test", dns.TypeA, dns.RcodeSuccess, "A 127.0.3.2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := query(t, srv, tt.src, tt.proto, tt.q, tt.qtype)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(answers(resp), ",")
			if resp.Rcode != tt.rcode || got != tt.want {
				t.Fatalf("%s %s from %s: got %s [%s], want %s [%s]", tt.q, dns.TypeToString[tt.qtype], tt.src,
					dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tt.rcode], tt.want)
			}
		})
	}
	if hits.Load() == 0 {
		t.Fatal("fake upstream got no queries")
	}
}

func mustReverse(ip string) string {
	r, err := dns.ReverseAddr(ip)
	if err != nil {
		panic(err)
	}
	return r
}

// TestRoundRobin: a shared alias returns every address, in varying order.
func TestRoundRobin(t *testing.T) {
	tab := NewTable()
	n := Network{Name: "n", Domain: "d"}
	for i := 2; i < 6; i++ {
		tab.Set(n, Record{Key: fmt.Sprint(i), Names: []string{fmt.Sprint("c", i)}, Aliases: []string{"svc"}, Addrs: pfx(fmt.Sprintf("127.0.1.%d/24", i)), Gateways: gw})
	}
	srv := startServer(t, &Resolver{Table: tab})
	firsts := map[string]bool{}
	for range 40 {
		resp, err := query(t, srv, "127.0.1.9", "udp", "svc", dns.TypeA)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Answer) != 4 {
			t.Fatalf("got %d answers, want 4", len(resp.Answer))
		}
		firsts[resp.Answer[0].(*dns.A).A.String()] = true
	}
	if len(firsts) < 2 {
		t.Fatalf("got first addresses %v over 40 queries, want them to vary", firsts)
	}
}

// TestTableUpdates: Set replaces, Remove forgets, the listen set and the
// emptiness report follow.
func TestTableUpdates(t *testing.T) {
	tab := NewTable()
	n := Network{Name: "n", Domain: "d"}
	g1, g2 := netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("10.1.0.1")
	tab.Set(n, Record{Key: "a", Names: []string{"x"}, Addrs: pfx("10.0.0.2/24"), Gateways: []netip.Addr{g1}})
	tab.Set(Network{Name: "m"}, Record{Key: "b", Names: []string{"y"}, Addrs: pfx("10.1.0.2/24"), Gateways: []netip.Addr{g2}})
	tab.Set(n, Record{Key: "a", Names: []string{"z"}, Addrs: pfx("10.0.0.3/24"), Gateways: []netip.Addr{g1}})
	src := netip.MustParseAddr("10.0.0.9")
	if r := tab.lookupName(src, g1, "x", true, true); r.known {
		t.Fatalf("old name x: got known %v, want gone after replace", r.addrs)
	}
	if r := tab.lookupName(src, g1, "z", true, true); !r.known || len(r.addrs) != 1 || r.addrs[0].String() != "10.0.0.3" {
		t.Fatalf("z: got %v, want [10.0.0.3]", r.addrs)
	}
	if got := len(tab.Gateways()); got != 2 {
		t.Fatalf("gateways: got %d, want 2", got)
	}
	if empty := tab.Remove("n", "a"); empty {
		t.Fatal("Remove(n,a): got empty, want m still there")
	}
	if got := tab.Gateways(); len(got) != 1 || got[0] != g2 {
		t.Fatalf("gateways: got %v, want [%v]", got, g2)
	}
	if empty := tab.Remove("m", "b"); !empty {
		t.Fatal("Remove(m,b): got not empty, want empty")
	}
	if tab.Len() != 0 {
		t.Fatalf("Len: got %d, want 0", tab.Len())
	}
}

// TestServerListen: the listen set follows Listen's argument.
func TestServerListen(t *testing.T) {
	s := &Server{Handler: &Resolver{Table: NewTable()}}
	t.Cleanup(s.Shutdown)
	a1, a2 := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	if err := s.Listen([]netip.Addr{a1, a2}); err != nil {
		t.Fatal(err)
	}
	if got := s.Addrs(); len(got) != 2 {
		t.Fatalf("got %v, want 2 addresses", got)
	}
	old := s.Addrs()[0]
	if err := s.Listen([]netip.Addr{a2}); err != nil {
		t.Fatal(err)
	}
	if got := s.Addrs(); len(got) != 1 || got[0].Addr() != a2 {
		t.Fatalf("got %v, want only %v", got, a2)
	}
	// The stopped address no longer answers.
	if _, err := net.Dial("tcp", old.String()); err == nil {
		t.Fatalf("dial %s after it was dropped: got nil error, want refused", old)
	}
	// A non-local address binds thanks to IP_FREEBIND.
	if err := s.Listen([]netip.Addr{netip.MustParseAddr("192.0.2.77")}); err != nil {
		t.Fatalf("freebind: %v", err)
	}
}

func BenchmarkResolveLocal(b *testing.B) {
	tab := NewTable()
	n := Network{Name: "n", Domain: "dns.podman"}
	for i := range 1000 {
		tab.Set(n, Record{Key: fmt.Sprint(i), Names: []string{fmt.Sprint("c", i)}, Addrs: pfx(fmt.Sprintf("127.1.%d.%d/16", i/250, i%250+2)), Gateways: gw})
	}
	srv := startServer(b, &Resolver{Table: tab})
	c := &dns.Client{Net: "udp", Dialer: &net.Dialer{LocalAddr: &net.UDPAddr{IP: net.ParseIP("127.1.9.9")}}}
	co, err := c.Dial(srv.String())
	if err != nil {
		b.Fatal(err)
	}
	defer co.Close()
	m := new(dns.Msg).SetQuestion("c500.dns.podman.", dns.TypeA)
	b.ResetTimer()
	for range b.N {
		if _, _, err := c.ExchangeWithConn(m, co); err != nil {
			b.Fatal(err)
		}
	}
}

// fakeWriter is a dns.ResponseWriter for benchmarking the handler alone.
type fakeWriter struct {
	dns.ResponseWriter
	local, remote net.Addr
	buf           []byte
}

func (w *fakeWriter) LocalAddr() net.Addr  { return w.local }
func (w *fakeWriter) RemoteAddr() net.Addr { return w.remote }
func (w *fakeWriter) WriteMsg(m *dns.Msg) error {
	var err error
	w.buf, err = m.PackBuffer(w.buf[:cap(w.buf)])
	return err
}

// BenchmarkServeDNS measures the handler's own work per registered-name
// query (no sockets): allocations here are what drive the sidecar's GC.
func BenchmarkServeDNS(b *testing.B) {
	tab := NewTable()
	n := Network{Name: "n", Domain: "dns.podman"}
	for i := range 1000 {
		tab.Set(n, Record{Key: fmt.Sprint(i), Names: []string{fmt.Sprint("c", i)}, Addrs: pfx(fmt.Sprintf("127.1.%d.%d/16", i/250, i%250+2)), Gateways: gw})
	}
	rs := &Resolver{Table: tab}
	w := &fakeWriter{local: &net.UDPAddr{IP: net.IPv4(127, 1, 0, 1), Port: 53}, remote: &net.UDPAddr{IP: net.IPv4(127, 1, 9, 9), Port: 4000}, buf: make([]byte, 512)}
	m := new(dns.Msg).SetQuestion("c500.dns.podman.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		rs.ServeDNS(w, m)
	}
}

// TestTruncation: an answer too large for the asker's UDP size comes back
// truncated with TC set (the client then retries over TCP, which gets all).
func TestTruncation(t *testing.T) {
	tab := NewTable()
	n := Network{Name: "n", Domain: "dns.podman"}
	for i := range 100 {
		tab.Set(n, Record{Key: fmt.Sprint(i), Names: []string{fmt.Sprint("c", i)}, Aliases: []string{"all"}, Addrs: pfx(fmt.Sprintf("127.1.0.%d/16", i+2)), Gateways: gw})
	}
	srv := startServer(t, &Resolver{Table: tab})
	resp, err := query(t, srv, "127.1.9.9", "udp", "all.dns.podman", dns.TypeA)
	if err != nil {
		t.Fatalf("udp: %v", err)
	}
	if !resp.Truncated || len(resp.Answer) >= 100 {
		t.Fatalf("udp without EDNS: got TC=%v with %d answers, want TC with fewer than 100", resp.Truncated, len(resp.Answer))
	}
	resp, err = query(t, srv, "127.1.9.9", "tcp", "all.dns.podman", dns.TypeA)
	if err != nil || resp.Truncated || len(resp.Answer) != 100 {
		t.Fatalf("tcp: got %d answers, TC=%v, err %v; want 100", len(resp.Answer), resp != nil && resp.Truncated, err)
	}
}

// TestScopeOutsider: an asker on none of the networks sees them only if it
// is the host itself (its source is the address it asked, or loopback);
// before, any source asking on a gateway address was in scope, which made
// the sidecar an open resolver for whatever could route to a gateway
// (test/security TestSidecarAudience failed on it).
func TestScopeOutsider(t *testing.T) {
	tbl := NewTable()
	gw := netip.MustParseAddr("10.44.1.1")
	tbl.Set(Network{Name: "net1", Domain: "dns.podman"}, Record{Key: "a@eth0", Names: []string{"web"}, Addrs: pfx("10.44.1.2/24"), Gateways: []netip.Addr{gw}})
	tests := []struct {
		name     string
		src      string
		wantSeen bool
	}{
		{"member", "10.44.1.3", true},
		{"the host, through its own address", "10.44.1.1", true},
		{"the host, over loopback", "127.0.0.1", true},
		{"outsider routed to the gateway", "192.0.2.2", false},
		{"the host's other address", "192.0.2.1", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := tbl.lookupName(netip.MustParseAddr(tt.src), gw, "web", true, false)
			if res.inScope != tt.wantSeen || (len(res.addrs) > 0) != tt.wantSeen {
				t.Errorf("got inScope=%v addrs=%v, want seen=%v", res.inScope, res.addrs, tt.wantSeen)
			}
		})
	}
}
