package nameserver

import (
	"context"
	"log"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// TTL of every answer from the table. Zero: containers come and go, and a
// name must be gone for everyone the moment DEL returns, so nobody may
// cache it; zero also lets round robin act on every lookup.
const TTL = 0

// Resolver answers queries from a Table, scoped by the asker's source
// address, and forwards the rest. It implements dns.Handler.
type Resolver struct {
	// Table holds the registered names.
	Table *Table
	// Forwarder sends other names upstream; nil refuses them.
	Forwarder *Forwarder
	// Upstreams are used for networks that name none of their own.
	Upstreams []netip.AddrPort
	// ErrorLog receives forwarding failures; nil discards them.
	ErrorLog *log.Logger
}

// ServeDNS implements dns.Handler.
func (rs *Resolver) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := rs.answer(w, req)
	if m == nil {
		return
	}
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		// A reply larger than the asker takes over UDP (512 bytes, or its
		// EDNS0 size) goes out truncated with TC set, so that it retries
		// over TCP, rather than as a datagram it cannot read whole (a
		// shared alias of a few dozen containers is enough).
		size := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil && int(opt.UDPSize()) > size {
			size = int(opt.UDPSize())
		}
		m.Truncate(size)
	}
	_ = w.WriteMsg(m)
}

func (rs *Resolver) answer(w dns.ResponseWriter, req *dns.Msg) *dns.Msg {
	m := new(dns.Msg)
	if len(req.Question) != 1 || req.Opcode != dns.OpcodeQuery {
		return m.SetRcode(req, dns.RcodeNotImplemented)
	}
	m.SetReply(req)
	m.RecursionAvailable = true
	q := req.Question[0]
	src, local := addrOf(w.RemoteAddr()), addrOf(w.LocalAddr())
	name := normalize(q.Name)

	var res lookupResult
	switch {
	case q.Qtype == dns.TypePTR:
		a, ok := reverseAddr(name)
		if !ok {
			res = rs.Table.lookupName(src, local, name, false, false)
			break
		}
		res = rs.Table.lookupAddr(src, local, a)
		for _, p := range res.ptr {
			m.Answer = append(m.Answer, &dns.PTR{Hdr: hdr(q.Name, dns.TypePTR), Ptr: p})
		}
	default:
		v4 := q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY
		v6 := q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeANY
		res = rs.Table.lookupName(src, local, name, v4, v6)
		m.Answer = make([]dns.RR, 0, len(res.addrs))
		for _, a := range res.addrs {
			if a.Is4() {
				m.Answer = append(m.Answer, &dns.A{Hdr: hdr(q.Name, dns.TypeA), A: a.AsSlice()})
			} else {
				m.Answer = append(m.Answer, &dns.AAAA{Hdr: hdr(q.Name, dns.TypeAAAA), AAAA: a.AsSlice()})
			}
		}
	}
	switch {
	case !res.inScope:
		// Not asked from one of our networks nor on one of their addresses.
		return m.SetRcode(req, dns.RcodeRefused)
	case res.known:
		// Known name: its records, or NODATA for another type.
		m.Authoritative = true
		return m
	case res.authority:
		m.Authoritative = true
		return m.SetRcode(req, dns.RcodeNameError)
	case res.internal || rs.Forwarder == nil:
		return m.SetRcode(req, dns.RcodeRefused)
	}
	ups := res.upstreams
	if len(ups) == 0 {
		ups = rs.Upstreams
	}
	if len(ups) == 0 {
		return m.SetRcode(req, dns.RcodeServerFailure)
	}
	proto := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		proto = "tcp"
	}
	ctx, cancel := context.WithTimeout(context.Background(), rs.Forwarder.timeout())
	defer cancel()
	resp, err := rs.Forwarder.Exchange(ctx, req, ups, proto)
	if err != nil {
		if rs.ErrorLog != nil {
			rs.ErrorLog.Printf("forward %s %s from %s: %v", q.Name, dns.TypeToString[q.Qtype], src, err)
		}
		return m.SetRcode(req, dns.RcodeServerFailure)
	}
	resp.Id = req.Id
	return resp
}

func hdr(name string, t uint16) dns.RR_Header {
	return dns.RR_Header{Name: name, Rrtype: t, Class: dns.ClassINET, Ttl: TTL}
}

func addrOf(a net.Addr) netip.Addr {
	var ip netip.Addr
	switch a := a.(type) {
	case *net.UDPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	case *net.TCPAddr:
		ip, _ = netip.AddrFromSlice(a.IP)
	}
	return ip.Unmap()
}

// reverseAddr parses "4.3.2.1.in-addr.arpa" and its ip6.arpa counterpart.
func reverseAddr(name string) (netip.Addr, bool) {
	if s, ok := cutSuffix(name, ".in-addr.arpa"); ok {
		var b [4]byte
		labels := splitLabels(s)
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		for i, l := range labels {
			n := 0
			if len(l) == 0 || len(l) > 3 {
				return netip.Addr{}, false
			}
			for _, c := range l {
				if c < '0' || c > '9' {
					return netip.Addr{}, false
				}
				n = n*10 + int(c-'0')
			}
			if n > 255 {
				return netip.Addr{}, false
			}
			b[3-i] = byte(n)
		}
		return netip.AddrFrom4(b), true
	}
	if s, ok := cutSuffix(name, ".ip6.arpa"); ok {
		labels := splitLabels(s)
		if len(labels) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return netip.Addr{}, false
			}
			v, ok := hexVal(l[0])
			if !ok {
				return netip.Addr{}, false
			}
			pos := 31 - i
			if pos%2 == 0 {
				b[pos/2] |= v << 4
			} else {
				b[pos/2] |= v
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}

func cutSuffix(s, suffix string) (string, bool) {
	if len(s) > len(suffix) && s[len(s)-len(suffix):] == suffix {
		return s[:len(s)-len(suffix)], true
	}
	return s, false
}

func splitLabels(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func hexVal(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// DefaultTimeout bounds one forwarded query over all upstreams.
const DefaultTimeout = 3 * time.Second
