package security

import (
	"testing"

	"github.com/containernetworking/cni/libcni"

	"github.com/berthnet/berth/internal/nstest"
)

// The private host's uplink carries two addresses of each family; the
// outside namespace reaches both.
const (
	bound4, other4 = "192.0.2.1", "192.0.2.10"
	bound6, other6 = "2001:db8::1", "2001:db8::10"
	outside4       = "192.0.2.2"
	outside6       = "2001:db8::2"
)

// TestHostIPBound: a port published on one host address (hostIP) answers
// there, over TCP and UDP, and nowhere else: not on the host's other
// address of the same family and link, not on loopback, not through the
// bridge's gateway address, and an IPv4 hostIP is not on IPv6 or back.
// Both backends.
func TestHostIPBound(t *testing.T) {
	for _, backend := range []string{"nftables", "iptables"} {
		t.Run(backend, func(t *testing.T) {
			e := nstest.NewEnv(t)
			out := nstest.NewNS(t, "out")
			nstest.Veth(t, e.Host, "uplink", bound4+"/24", out, "eth0", outside4+"/24")
			e.Host.MustExec(t, "ip", "addr", "add", other4+"/24", "dev", "uplink")
			e.Host.MustExec(t, "ip", "-6", "addr", "add", bound6+"/64", "dev", "uplink", "nodad")
			e.Host.MustExec(t, "ip", "-6", "addr", "add", other6+"/64", "dev", "uplink", "nodad")
			out.MustExec(t, "ip", "-6", "addr", "add", outside6+"/64", "dev", "eth0", "nodad")
			list := e.Conflist([]byte(`{"cniVersion":"1.1.0","name":"pubnet","plugins":[
				{"type":"bridge","bridge":"br-pub","isGateway":true,"isDefaultGateway":true,"ipMasq":true,
				 "ipam":{"type":"host-local","ranges":[[{"subnet":"10.42.0.0/24"}],[{"subnet":"fd42::/64"}]]}},
				{"type":"portmap","capabilities":{"portMappings":true},"backend":"` + backend + `"}]}`))
			c := e.Run(list, "pub1", func(rc *libcni.RuntimeConf) {
				rc.CapabilityArgs = map[string]any{"portMappings": []map[string]any{
					{"hostPort": 8080, "containerPort": tcpPort, "protocol": "tcp", "hostIP": bound4},
					{"hostPort": 8081, "containerPort": udpPort, "protocol": "udp", "hostIP": bound4},
					{"hostPort": 8082, "containerPort": tcpPort, "protocol": "tcp", "hostIP": bound6},
					{"hostPort": 8083, "containerPort": udpPort, "protocol": "udp", "hostIP": bound6},
				}}
			})
			serveProbes(t, c.NS, "pub1")
			// Another container on the same bridge, trying the host's
			// addresses from inside.
			peer := e.Run(list, "peer1")
			gw4 := "10.42.0.1"
			var flows []flow
			for _, p := range []struct {
				proto        string
				port4, port6 int
			}{{"tcp", 8080, 8082}, {"udp", 8081, 8083}} {
				flows = append(flows,
					flow{what: "outside to the bound IPv4 address", from: out, proto: p.proto, addr: bound4, port: p.port4, want: "pub1", ok: true},
					flow{what: "outside to the host's other IPv4 address", from: out, proto: p.proto, addr: other4, port: p.port4, ok: false},
					flow{what: "host to its other IPv4 address", from: e.Host, proto: p.proto, addr: other4, port: p.port4, ok: false},
					flow{what: "host to 127.0.0.1", from: e.Host, proto: p.proto, addr: "127.0.0.1", port: p.port4, ok: false},
					flow{what: "a container to the bridge gateway", from: peer.NS, proto: p.proto, addr: gw4, port: p.port4, ok: false},
					flow{what: "outside to the bound IPv6 address", from: out, proto: p.proto, addr: bound6, port: p.port6, want: "pub1", ok: true},
					flow{what: "outside to the host's other IPv6 address", from: out, proto: p.proto, addr: other6, port: p.port6, ok: false},
					flow{what: "host to ::1", from: e.Host, proto: p.proto, addr: "::1", port: p.port6, ok: false},
					flow{what: "the IPv4 mapping's port on the bound IPv6 address", from: out, proto: p.proto, addr: bound6, port: p.port4, ok: false},
					flow{what: "the IPv6 mapping's port on the bound IPv4 address", from: out, proto: p.proto, addr: bound4, port: p.port6, ok: false},
				)
			}
			expectFlows(t, flows)
		})
	}
}
