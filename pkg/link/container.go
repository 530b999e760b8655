package link

import (
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
)

// ConfigureIface gives the container interface its addresses and routes
// and brings it up, all through the container namespace's handle.
// Routes without a gateway use the gateway of the first address of their
// family, as the reference plugins do; a default route needs one.
//
// Same as, inside the container: ip link set IF up; ip addr add …; ip route add …
func ConfigureIface(c *NS, ifName string, ips []*current.IPConfig, routes []*Route) error {
	l, err := c.Handle.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("look up %s in %s: %w", ifName, c.Path, err)
	}
	// Up first: IPv6 routes via a gateway need the link up.
	if err := c.Handle.LinkSetUp(l); err != nil {
		return fmt.Errorf("set %s up: %w", ifName, err)
	}
	var gw4, gw6 net.IP
	for _, ipc := range ips {
		ipn := ipc.Address
		if err := AddAddr(c.Handle, l, &ipn); err != nil {
			return err
		}
		if ipc.Gateway != nil {
			if IsV4(ipc.Address.IP) && gw4 == nil {
				gw4 = ipc.Gateway
			} else if !IsV4(ipc.Address.IP) && gw6 == nil {
				gw6 = ipc.Gateway
			}
		}
	}
	for _, r := range routes {
		gw := r.GW
		if gw == nil {
			if IsV4(r.Dst.IP) {
				gw = gw4
			} else {
				gw = gw6
			}
		}
		dst := r.Dst
		if err := AddRoute(c.Handle, l, &dst, gw, r.MTU); err != nil {
			return err
		}
	}
	return nil
}

// IfaceAddrs returns the global unicast addresses of ifName in c, for
// teardown when no prevResult is given.
func IfaceAddrs(c *NS, ifName string) ([]*net.IPNet, error) {
	l, err := c.Handle.LinkByName(ifName)
	if err != nil {
		return nil, err
	}
	addrs, err := AddrList(c.Handle, l, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list addresses of %s: %w", ifName, err)
	}
	var out []*net.IPNet
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			out = append(out, a.IPNet)
		}
	}
	return out, nil
}
