package security

import (
	"fmt"
	"strings"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

// dualStack is a bridge network with IPv4 and IPv6 and the firewall
// plugin with the given ingress policy.
func dualStack(e *nstest.Env, name string, n int, policy, backend string) []byte {
	return []byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
		{"type":"bridge","bridge":%q,"isGateway":true,"isDefaultGateway":true,"ipMasq":true,
		 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.40.%d.0/24"}],[{"subnet":"fd40:0:0:%d::/64"}]]}},
		{"type":"firewall","ingressPolicy":%q,"backend":%q}]}`, name, nstest.UniqueName("br"), n, n, policy, backend))
}

// TestIsolationEveryProtocol: between two same-bridge networks nothing
// passes, in either direction, over ICMP, TCP or UDP, IPv4 or IPv6; within
// a network everything does (the control that shows the probes work); on
// an isolated (icc off) network its containers reach neither each other
// nor anyone else's, but do reach their gateway. Both backends.
func TestIsolationEveryProtocol(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			e := nstest.NewEnv(t)
			a := e.Conflist(dualStack(e, "neta", 1, "same-bridge", backend))
			b := e.Conflist(dualStack(e, "netb", 2, "same-bridge", backend))
			c := e.Conflist(dualStack(e, "netc", 3, "isolated", backend))
			ctrs := map[string]*nstest.Container{}
			ctrs["a1"], ctrs["a2"] = e.Run(a, "a1"), e.Run(a, "a2")
			ctrs["b1"] = e.Run(b, "b1")
			ctrs["c1"], ctrs["c2"] = e.Run(c, "c1"), e.Run(c, "c2")
			for id, ctr := range ctrs {
				serveProbes(t, ctr.NS, id)
			}
			gw := func(ctr *nstest.Container, fam string) string {
				for _, ipc := range ctr.Res.IPs {
					if (ipc.Address.IP.To4() != nil) == (fam == "4") {
						return ipc.Gateway.String()
					}
				}
				t.Fatalf("no IPv%s gateway", fam)
				return ""
			}
			serveProbes(t, e.Host, "host")
			var flows []flow
			pair := func(what, from, to string, ok bool) {
				for _, fam := range []string{"4", "6"} {
					for _, proto := range []string{"icmp", "tcp", "udp"} {
						flows = append(flows, flow{what: what + " v" + fam, from: ctrs[from].NS, proto: proto, addr: ctrs[to].IP(t, fam), want: to, ok: ok})
					}
				}
			}
			pair("within a", "a1", "a2", true)
			pair("within a, back", "a2", "a1", true)
			pair("a to b", "a1", "b1", false)
			pair("b to a", "b1", "a1", false)
			pair("within isolated c", "c1", "c2", false)
			pair("within isolated c, back", "c2", "c1", false)
			pair("c to a", "c1", "a1", false)
			pair("a to c", "a1", "c1", false)
			for _, fam := range []string{"4", "6"} {
				for _, proto := range []string{"icmp", "tcp", "udp"} {
					flows = append(flows, flow{what: "isolated c to its gateway v" + fam, from: ctrs["c1"].NS, proto: proto, addr: gw(ctrs["c1"], fam), want: "host", ok: true})
				}
			}
			expectFlows(t, flows)
		})
	}
}

// TestOpenNetworksReachEachOther is the control for the test above: with
// no ingress policy the same two networks reach each other over every
// protocol and family, so what that test finds blocked is blocked by the
// policy, not by a missing route (it was, before isDefaultGateway).
func TestOpenNetworksReachEachOther(t *testing.T) {
	e := nstest.NewEnv(t)
	a := e.Conflist(dualStack(e, "neta", 1, "", "nftables"))
	b := e.Conflist(dualStack(e, "netb", 2, "", "nftables"))
	a1, b1 := e.Run(a, "a1"), e.Run(b, "b1")
	serveProbes(t, a1.NS, "a1")
	serveProbes(t, b1.NS, "b1")
	var flows []flow
	for _, fam := range []string{"4", "6"} {
		for _, proto := range []string{"icmp", "tcp", "udp"} {
			flows = append(flows,
				flow{what: "a to b v" + fam, from: a1.NS, proto: proto, addr: b1.IP(t, fam), want: "b1", ok: true},
				flow{what: "b to a v" + fam, from: b1.NS, proto: proto, addr: a1.IP(t, fam), want: "a1", ok: true})
		}
	}
	expectFlows(t, flows)
}

// TestBridgeLinkLocalUsable: right after the first ADD of a network, the
// bridge's IPv6 addresses are usable (none tentative). The kernel sends no
// neighbour solicitation from a device whose link-local address is still
// in DAD, so until then IPv6 traffic forwarded to the first container of a
// new network (a published port, a routed client) was dropped: its first
// connection from outside took two seconds, while IPv4 took a millisecond.
func TestBridgeLinkLocalUsable(t *testing.T) {
	e := nstest.NewEnv(t)
	br := nstest.UniqueName("br")
	list := e.Conflist([]byte(fmt.Sprintf(`{"cniVersion":"1.1.0","name":"lladdr","plugins":[
		{"type":"bridge","bridge":%q,"isGateway":true,
		 "ipam":{"type":"host-local","ranges":[[{"subnet":"fd45::/64"}]]}}]}`, br)))
	e.Run(list, "ll1")
	out := e.Host.MustExec(t, "ip", "-6", "addr", "show", "dev", br)
	if !strings.Contains(out, "fe80::") {
		t.Fatalf("bridge %s has no link-local address:\n%s", br, out)
	}
	if strings.Contains(out, "tentative") {
		t.Fatalf("bridge %s right after the first ADD: an address is still tentative:\n%s", br, out)
	}
}
