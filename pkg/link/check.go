package link

import (
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
)

// CheckIface compares a container interface with prevResult: its MAC, and
// that it has prevResult's addresses and routes (CNI CHECK).
//
// Same as, inside the container: ip link show IF; ip addr show dev IF; ip route show dev IF
func CheckIface(cont *NS, ifName string, prev *current.Result) error {
	l, err := cont.Handle.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("interface %s in %s: %w", ifName, cont.Path, err)
	}
	for _, iface := range prev.Interfaces {
		if iface.Name == ifName && iface.Sandbox != "" && iface.Mac != "" && iface.Mac != l.Attrs().HardwareAddr.String() {
			return fmt.Errorf("%s has MAC %s, prevResult says %s", ifName, l.Attrs().HardwareAddr, iface.Mac)
		}
	}
	addrs, err := AddrList(cont.Handle, l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of %s: %w", ifName, err)
	}
	for _, ipc := range prev.IPs {
		found := false
		for _, a := range addrs {
			if a.IP.Equal(ipc.Address.IP) && a.Mask.String() == ipc.Address.Mask.String() {
				found = true
				break
			}
		}
		if !found {
			return fmt.Errorf("%s lacks address %s", ifName, ipc.Address.String())
		}
	}
	routes, err := RouteList(cont.Handle, l, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("routes of %s: %w", ifName, err)
	}
	for _, want := range prev.Routes {
		if !hasRoute(routes, want.Dst) {
			return fmt.Errorf("%s lacks route to %s", ifName, want.Dst.String())
		}
	}
	return nil
}

// hasRoute reports whether routes has one to dst. Netlink gives a default
// route a nil Dst: it is read as 0.0.0.0/0 or ::/0 by its family.
func hasRoute(routes []netlink.Route, dst net.IPNet) bool {
	for _, r := range routes {
		got := r.Dst
		if got == nil {
			if r.Family == netlink.FAMILY_V4 {
				got = &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
			} else {
				got = &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
			}
		}
		if got.String() == dst.String() {
			return true
		}
	}
	return false
}
