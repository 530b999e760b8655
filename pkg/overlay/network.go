// Package overlay is the control plane of berth's multi-host VXLAN overlay
// (plugins/vxlan-overlay, cmd/berth-overlayd): which host holds which
// subnet of the overlay (leases, in etcd or, on one host, in a file),
// where each host's VTEP is, and the kernel entries that reach every other
// host (one route, one neighbour and one FDB entry per remote host, never
// per remote container).
//
// The design is Flannel's vxlan backend (routed: a subnet per host, the
// VXLAN device as next hop) rather than Docker's overlay driver (one L2
// segment across hosts, with an FDB and neighbour entry per remote
// container): the kernel state and the etcd traffic grow with hosts, not
// with containers, and a container start on one host changes nothing on
// the others. See README.md, "vxlan-overlay".
package overlay

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/berthnet/berth/pkg/registry"
)

// Store types.
const (
	StoreEtcd  = "etcd"
	StoreLocal = "local"
)

// DefaultPrefix is the etcd key prefix unless the store says otherwise.
const DefaultPrefix = "/berth"

// Store says where the leases live.
type Store struct {
	Type      string              `json:"type"`
	Endpoints []string            `json:"endpoints,omitempty"`
	Prefix    string              `json:"prefix,omitempty"`
	TLS       *registry.TLSConfig `json:"tls,omitempty"`
}

// Network is what the daemon needs of one overlay network; the plugin
// derives it from its config and sends it with every request.
type Network struct {
	Name          string       `json:"name"`
	VNI           int          `json:"vni"`
	Device        string       `json:"device"`
	Subnet        netip.Prefix `json:"subnet"`
	HostSubnetLen int          `json:"hostSubnetLen"`
	Store         Store        `json:"store"`
	// LeaseFile is this host's lease of the network (see Lease).
	LeaseFile string `json:"leaseFile"`
	// LeaseTTL is the etcd lease's TTL in seconds.
	LeaseTTL int64 `json:"leaseTTL"`
}

// keyPrefix is where the network's subnet leases live in etcd:
// <prefix>/overlay/<vni>/subnets/; the VNI, not the network name, is the
// overlay's identity across hosts.
func (n *Network) keyPrefix() string {
	p := n.Store.Prefix
	if p == "" {
		p = DefaultPrefix
	}
	return fmt.Sprintf("%s/overlay/%d/subnets/", strings.TrimSuffix(p, "/"), n.VNI)
}

// key is the etcd key of one host subnet: 10.96.3.0/24 is "10.96.3.0-24".
func (n *Network) key(subnet netip.Prefix) string {
	return n.keyPrefix() + strings.Replace(subnet.String(), "/", "-", 1)
}

// subnetOfKey parses what key makes.
func (n *Network) subnetOfKey(k string) (netip.Prefix, bool) {
	s, ok := strings.CutPrefix(k, n.keyPrefix())
	if !ok {
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(strings.Replace(s, "-", "/", 1))
	if err != nil || p.Bits() != n.HostSubnetLen || !n.Subnet.Contains(p.Addr()) {
		return netip.Prefix{}, false
	}
	return p, true
}

// HostSubnets is the number of host subnets in the overlay (capped: the
// allocator walks them in order).
func (n *Network) HostSubnets() int {
	bits := n.HostSubnetLen - n.Subnet.Bits()
	if bits > 16 {
		bits = 16
	}
	return 1 << bits
}

// HostSubnet is the i-th host subnet.
func (n *Network) HostSubnet(i int) netip.Prefix {
	a := n.Subnet.Masked().Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i) << (32 - n.HostSubnetLen)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), n.HostSubnetLen)
}

// Gateway is a host subnet's first address: the host's bridge holds it,
// and remote hosts route the subnet through it.
func Gateway(subnet netip.Prefix) netip.Addr { return subnet.Masked().Addr().Next() }

// IPNet converts a prefix.
func IPNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
