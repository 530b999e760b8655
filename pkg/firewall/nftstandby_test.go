package firewall

import (
	"net"
	"testing"

	"github.com/berthnet/berth/internal/nstest"
)

// TestStandbyPromotion: container c publishes one host port on two
// networks, in each family, on every host address or one; the first
// attachment serves it, the second waits in standby, and removing the
// first (DEL with or without its addresses, or GC of its network) leaves
// the port map element to the second, with its address, under its tag.
func TestStandbyPromotion(t *testing.T) {
	nstest.RequireRoot(t)
	type removal func(first PortMap) error
	byDEL := func(p PortMap) error { return (nftPorts{}).DelPorts(p) }
	byBareDEL := func(p PortMap) error { p.ContainerIPs = nil; return (nftPorts{}).DelPorts(p) }
	byGC := func(p PortMap) error { return (nftPorts{}).GCPorts(p.Network, nil) }
	v4a, v4b := &net.IPNet{IP: net.ParseIP("10.1.0.2"), Mask: net.CIDRMask(16, 32)}, &net.IPNet{IP: net.ParseIP("10.2.0.2"), Mask: net.CIDRMask(16, 32)}
	v6a, v6b := &net.IPNet{IP: net.ParseIP("fd01::2"), Mask: net.CIDRMask(64, 128)}, &net.IPNet{IP: net.ParseIP("fd02::2"), Mask: net.CIDRMask(64, 128)}
	tests := []struct {
		name   string
		ips    [2]*net.IPNet
		hostIP net.IP
		remove removal
	}{
		{"v4 DEL", [2]*net.IPNet{v4a, v4b}, nil, byDEL},
		{"v4 DEL without addresses", [2]*net.IPNet{v4a, v4b}, nil, byBareDEL},
		{"v4 GC", [2]*net.IPNet{v4a, v4b}, nil, byGC},
		{"v4 hostIP DEL", [2]*net.IPNet{v4a, v4b}, net.ParseIP("192.0.2.1"), byDEL},
		{"v4 hostIP GC", [2]*net.IPNet{v4a, v4b}, net.ParseIP("192.0.2.1"), byGC},
		{"v6 DEL", [2]*net.IPNet{v6a, v6b}, nil, byDEL},
		{"v6 DEL without addresses", [2]*net.IPNet{v6a, v6b}, nil, byBareDEL},
		{"v6 hostIP GC", [2]*net.IPNet{v6a, v6b}, net.ParseIP("2001:db8::1"), byGC},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inNS(t, func() {
				var ps [2]PortMap
				for i, network := range []string{"na", "nb"} {
					ps[i] = PortMap{Network: network, ContainerID: "c", IfName: []string{"eth0", "eth1"}[i],
						ContainerIPs: []*net.IPNet{tt.ips[i]},
						Mappings:     []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "udp", HostIP: tt.hostIP}}}
					if err := (nftPorts{}).AddPorts(ps[i]); err != nil {
						t.Fatalf("ADD on %s: %v", network, err)
					}
				}
				for i := range ps {
					if err := (nftPorts{}).CheckPorts(ps[i]); err != nil {
						t.Errorf("CHECK on %s: %v", ps[i].Network, err)
					}
				}
				other := PortMap{Network: "nb", ContainerID: "d", IfName: "eth0", ContainerIPs: []*net.IPNet{tt.ips[1]}, Mappings: ps[1].Mappings}
				if err := (nftPorts{}).AddPorts(other); err == nil {
					t.Errorf("ADD of another container's port: no error")
				}
				if err := tt.remove(ps[0]); err != nil {
					t.Fatalf("removing the serving attachment: %v", err)
				}
				tgt := targets(ps[1])[0]
				e, err := elemsOf(tgt, tag(ps[1].Network, ps[1].ContainerID, ps[1].IfName))
				if err != nil {
					t.Fatal(err)
				}
				els, err := ListPublished()
				if err != nil {
					t.Fatal(err)
				}
				if len(els) != 1 || els[0].Tag != e.dnat.Comment || !els[0].ContainerIP.Equal(tt.ips[1].IP) || els[0].HostPort != 8080 {
					t.Errorf("published after the first attachment went: got %+v, want 8080 to %s tagged %s", els, tt.ips[1].IP, e.dnat.Comment)
				}
				if err := (nftPorts{}).CheckPorts(ps[1]); err != nil {
					t.Errorf("CHECK of the attachment left: %v", err)
				}
				if _, found, err := elementComment(nil, keyed{standbyMap(nftTable(), tgt.f), e.standby.Key}); err != nil || found {
					t.Errorf("standby element of the promoted attachment: found %v, %v; want gone", found, err)
				}
				if err := (nftPorts{}).DelPorts(ps[1]); err != nil {
					t.Fatal(err)
				}
				if els, err := ListPublished(); err != nil || len(els) != 0 {
					t.Errorf("published after both went: %+v, %v; want none", els, err)
				}
			})
		})
	}
}
