package firewall

import (
	"net"
	"testing"
)

// TestDecodePort: what ListPublished reads back is what AddPorts wrote
// (elemsOf), for both families, with and without a host address.
func TestDecodePort(t *testing.T) {
	tests := []struct {
		name string
		m    PortMapping
		ctr  string
	}{
		{"v4 any", PortMapping{HostPort: 3000, ContainerPort: 80, Protocol: "tcp"}, "10.1.0.5/24"},
		{"v4 host ip", PortMapping{HostPort: 53, ContainerPort: 5353, Protocol: "udp", HostIP: net.ParseIP("192.0.2.1")}, "10.1.0.5/24"},
		{"v6 any", PortMapping{HostPort: 60999, ContainerPort: 8443, Protocol: "sctp"}, "fd00::5/64"},
		{"v6 host ip", PortMapping{HostPort: 443, ContainerPort: 443, Protocol: "tcp", HostIP: net.ParseIP("2001:db8::1")}, "fd00::5/64"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ip, ipn, _ := net.ParseCIDR(tt.ctr)
			ipn.IP = ip
			tg := tag("net", "abc", "eth0")
			tgt := targets(PortMap{Mappings: []PortMapping{tt.m}, ContainerIPs: []*net.IPNet{ipn}})
			if len(tgt) != 1 {
				t.Fatalf("%d targets", len(tgt))
			}
			e, err := elemsOf(tgt[0], tg)
			if err != nil {
				t.Fatal(err)
			}
			p, ok := decodePort(tgt[0].f, tgt[0].specific(), e.dnat)
			if !ok {
				t.Fatal("not decoded")
			}
			if p.HostPort != tt.m.HostPort || p.ContainerPort != tt.m.ContainerPort || p.Protocol != tt.m.Protocol ||
				!p.ContainerIP.Equal(ip) || (tt.m.HostIP != nil && !p.HostIP.Equal(tt.m.HostIP)) || (tt.m.HostIP == nil && p.HostIP != nil) {
				t.Fatalf("decoded %+v from %s -> %s", p, tt.m, ip)
			}
			if !p.OwnedBy("net", "abc", "eth0") || p.Network != "net" || p.ContainerID != "abc" || p.IfName != "eth0" {
				t.Fatalf("owner %+v", p)
			}
		})
	}
}

// TestDecodeDNATRule: the iptables backend's DNAT rules, as iptables -S
// prints them (comment quotes already trimmed by taggedRules), read back.
func TestDecodeDNATRule(t *testing.T) {
	ip, ipn, _ := net.ParseCIDR("10.1.0.5/24")
	ipn.IP = ip
	ip6, ipn6, _ := net.ParseCIDR("fd00::5/64")
	ipn6.IP = ip6
	tests := []struct {
		name string
		m    PortMapping
		ctr  *net.IPNet
	}{
		{"v4", PortMapping{HostPort: 3000, ContainerPort: 80, Protocol: "tcp"}, ipn},
		{"v4 host ip", PortMapping{HostPort: 53, ContainerPort: 53, Protocol: "udp", HostIP: net.ParseIP("192.0.2.1")}, ipn},
		{"v6", PortMapping{HostPort: 443, ContainerPort: 8443, Protocol: "tcp"}, ipn6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pm := PortMap{Mappings: []PortMapping{tt.m}, ContainerIPs: []*net.IPNet{tt.ctr}}
			tgt := targets(pm)
			rules := iptRules(pm, tgt[0], tag("net", "abc", "eth0"))
			// iptables prints the address with its prefix length.
			spec := append([]string(nil), rules[0].spec...)
			p, ok := decodeDNATRule(spec)
			if !ok || p.HostPort != tt.m.HostPort || p.ContainerPort != tt.m.ContainerPort || p.Protocol != tt.m.Protocol ||
				!p.ContainerIP.Equal(tt.ctr.IP) || !p.OwnedBy("net", "abc", "eth0") ||
				(tt.m.HostIP != nil && !p.HostIP.Equal(tt.m.HostIP)) || (tt.m.HostIP == nil && p.HostIP != nil) {
				t.Fatalf("decoded %+v (ok %v) from %v", p, ok, spec)
			}
		})
	}
}
