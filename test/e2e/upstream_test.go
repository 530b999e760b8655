package e2e

import (
	"net"
	"strings"
	"testing"

	"github.com/containernetworking/plugins/pkg/ns"
	"github.com/miekg/dns"

	"github.com/berthnet/berth/internal/nstest"
)

// UpstreamAnswer is what the fake upstream answers for *.example.test.
const UpstreamAnswer = "192.0.2.99"

// startUpstream runs the fake DNS upstream on Upstream in the host
// namespace, the only nameserver of the engine's resolv.conf: A queries for
// example.test names get UpstreamAnswer, their other types no data, other
// names NXDOMAIN, so
// forwarding never leaves the test's namespaces.
func startUpstream(t testing.TB, host *nstest.NS) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg).SetReply(r)
		q := r.Question[0]
		switch {
		case !strings.HasSuffix(q.Name, ".example.test."):
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(UpstreamAnswer)})
		}
		// Other types of an example.test name: no data (NOERROR, empty).
		_ = w.WriteMsg(m)
	})
	var pc net.PacketConn
	var ln net.Listener
	err := host.Do(func(ns.NetNS) (err error) {
		if pc, err = net.ListenPacket("udp4", Upstream+":53"); err != nil {
			return err
		}
		ln, err = net.Listen("tcp4", Upstream+":53")
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
