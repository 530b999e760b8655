package link

import (
	"errors"
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IsV4 reports whether ip is an IPv4 address.
func IsV4(ip net.IP) bool { return ip.To4() != nil }

func family(ip net.IP) int {
	if IsV4(ip) {
		return netlink.FAMILY_V4
	}
	return netlink.FAMILY_V6
}

// addr builds a netlink address; IPv6 addresses skip duplicate address
// detection so routes through them work at once instead of after DAD's
// second or so (the addresses come from IPAM, which guarantees uniqueness).
func addr(ipn *net.IPNet) *netlink.Addr {
	a := &netlink.Addr{IPNet: ipn}
	if !IsV4(ipn.IP) {
		a.Flags = unix.IFA_F_NODAD
	}
	return a
}

// AddAddr adds an address; one that is already there is not an error.
//
// Same as: ip addr add IP/LEN dev LINK [nodad]
func AddAddr(h *netlink.Handle, l netlink.Link, ipn *net.IPNet) error {
	if err := h.AddrAdd(l, addr(ipn)); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("add address %s to %s: %w", ipn, l.Attrs().Name, err)
	}
	return nil
}

// EnsureGatewayAddr makes sure the bridge holds gw (with the subnet's
// mask). Another address of the same family inside the same subnet is a
// conflict unless force is set, in which case it is replaced; that is the
// reference bridge's forceAddress.
func EnsureGatewayAddr(h *netlink.Handle, br netlink.Link, gw *net.IPNet, force bool) error {
	addrs, err := AddrList(h, br, family(gw.IP))
	if err != nil {
		return fmt.Errorf("list addresses of %s: %w", br.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.Equal(gw.IP) {
			return nil
		}
		if a.IPNet.Contains(gw.IP) || gw.Contains(a.IP) {
			if !force {
				return fmt.Errorf("bridge %s already has address %s in the subnet of gateway %s (set forceAddress to replace it)", br.Attrs().Name, a.IPNet, gw)
			}
			if err := h.AddrDel(br, &a); err != nil && !IsNotFound(err) {
				return fmt.Errorf("remove address %s from %s: %w", a.IPNet, br.Attrs().Name, err)
			}
		}
	}
	return AddAddr(h, br, gw)
}

// Route is a route to install in a container: Dst via GW (GW nil: on-link
// or the family's gateway, see ConfigureIface).
type Route = types.Route

// AddRoute adds a route through dev; an existing identical route is fine,
// and one to the same destination through another device is kept.
//
// Same as: ip route add DST [via GW] dev LINK
func AddRoute(h *netlink.Handle, dev netlink.Link, dst *net.IPNet, gw net.IP, mtu int) error {
	r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: dst, Gw: gw, MTU: mtu}
	if gw == nil {
		r.Scope = netlink.SCOPE_LINK
	}
	err := h.RouteAdd(r)
	if errors.Is(err, unix.EEXIST) {
		// Another route to dst is there: a second interface joining another
		// network (docker network connect) brings its own default route.
		// Keep both, the first one preferred, as Docker does; appending an
		// identical route is EEXIST again, which means nothing to do.
		if err = h.RouteAppend(r); errors.Is(err, unix.EEXIST) {
			err = nil
		}
	}
	if err != nil {
		via := ""
		if gw != nil {
			via = " via " + gw.String()
		}
		return fmt.Errorf("add route %s%s dev %s: %w", dst, via, dev.Attrs().Name, err)
	}
	return nil
}
