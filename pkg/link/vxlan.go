package link

// VXLAN tunnel endpoints and the per-peer entries that steer traffic into
// them without learning or flooding: a route through the device, a
// permanent neighbour entry for the peer's gateway and an FDB entry that
// maps the peer's VTEP MAC to its underlay address.

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Vxlan describes a VXLAN device with learning off: every remote MAC is
// programmed (Peer), never learned from the wire.
type Vxlan struct {
	Name     string
	VNI      int
	Port     int
	Local    net.IP       // underlay address the tunnel is sourced from
	Underlay netlink.Link // device the tunnel leaves through
	MTU      int
}

// EnsureVxlan returns the VXLAN device v names, creating it (up) when
// missing. A device of that name with another VNI, port or local address
// is an error rather than silently reused: it is not the one v describes.
//
// Same as: ip link add NAME type vxlan id VNI dstport PORT local IP dev UL nolearning; ip link set NAME mtu M up
func EnsureVxlan(h *netlink.Handle, v Vxlan) (*netlink.Vxlan, error) {
	l, err := h.LinkByName(v.Name)
	if err != nil && !IsNotFound(err) {
		return nil, fmt.Errorf("look up %s: %w", v.Name, err)
	}
	if err != nil {
		attrs := netlink.NewLinkAttrs()
		attrs.Name = v.Name
		attrs.MTU = v.MTU
		vx := &netlink.Vxlan{LinkAttrs: attrs, VxlanId: v.VNI, Port: v.Port, SrcAddr: v.Local, Learning: false}
		if v.Underlay != nil {
			vx.VtepDevIndex = v.Underlay.Attrs().Index
		}
		if err := h.LinkAdd(vx); err != nil && !errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("create vxlan %s (vni %d): %w", v.Name, v.VNI, err)
		}
		if l, err = h.LinkByName(v.Name); err != nil {
			return nil, fmt.Errorf("look up %s: %w", v.Name, err)
		}
	}
	vx, ok := l.(*netlink.Vxlan)
	if !ok {
		return nil, fmt.Errorf("%s exists and is a %s, not a vxlan", v.Name, l.Type())
	}
	if vx.VxlanId != v.VNI || vx.Port != v.Port || (v.Local != nil && !vx.SrcAddr.Equal(v.Local)) {
		return nil, fmt.Errorf("%s exists with vni %d port %d local %s, want vni %d port %d local %s",
			v.Name, vx.VxlanId, vx.Port, vx.SrcAddr, v.VNI, v.Port, v.Local)
	}
	if v.MTU != 0 && vx.MTU != v.MTU {
		if err := h.LinkSetMTU(vx, v.MTU); err != nil {
			return nil, fmt.Errorf("set %s mtu %d: %w", v.Name, v.MTU, err)
		}
	}
	if vx.Flags&net.FlagUp == 0 {
		if err := h.LinkSetUp(vx); err != nil {
			return nil, fmt.Errorf("set %s up: %w", v.Name, err)
		}
	}
	return vx, nil
}

// Peer is one remote host as seen through a VXLAN device: its container
// subnet, the gateway address inside it, and its VTEP.
type Peer struct {
	Subnet   *net.IPNet
	Gateway  net.IP
	VTEPMAC  net.HardwareAddr
	Underlay net.IP
}

func (p Peer) String() string {
	return fmt.Sprintf("%s via %s (vtep %s at %s)", p.Subnet, p.Gateway, p.VTEPMAC, p.Underlay)
}

// SetPeer programs p on dev, replacing whatever entries of the same
// subnet, gateway or MAC were there: the FDB entry first, then the
// neighbour, then the route, so the route never points at an unresolved
// next hop.
//
// Same as: bridge fdb replace MAC dev DEV dst UL self permanent;
// ip neigh replace GW lladdr MAC dev DEV nud permanent;
// ip route replace SUBNET via GW dev DEV onlink
func SetPeer(h *netlink.Handle, dev netlink.Link, p Peer) error {
	fdb := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
		Flags: netlink.NTF_SELF, IP: p.Underlay, HardwareAddr: p.VTEPMAC}
	if err := h.NeighSet(fdb); err != nil {
		return fmt.Errorf("fdb %s dst %s dev %s: %w", p.VTEPMAC, p.Underlay, dev.Attrs().Name, err)
	}
	neigh := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
		IP: p.Gateway, HardwareAddr: p.VTEPMAC}
	if err := h.NeighSet(neigh); err != nil {
		return fmt.Errorf("neigh %s lladdr %s dev %s: %w", p.Gateway, p.VTEPMAC, dev.Attrs().Name, err)
	}
	r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: p.Subnet, Gw: p.Gateway, Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteReplace(r); err != nil {
		return fmt.Errorf("route %s via %s dev %s onlink: %w", p.Subnet, p.Gateway, dev.Attrs().Name, err)
	}
	return nil
}

// DelPeer removes p's route, neighbour and FDB entries from dev; missing
// ones are fine.
func DelPeer(h *netlink.Handle, dev netlink.Link, p Peer) error {
	var errs []error
	r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: p.Subnet, Gw: p.Gateway, Flags: int(netlink.FLAG_ONLINK)}
	if err := h.RouteDel(r); err != nil && !IsNotFound(err) {
		errs = append(errs, fmt.Errorf("route %s: %w", p.Subnet, err))
	}
	if p.Gateway != nil {
		n := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_INET, IP: p.Gateway}
		if err := h.NeighDel(n); err != nil && !IsNotFound(err) {
			errs = append(errs, fmt.Errorf("neigh %s: %w", p.Gateway, err))
		}
	}
	if p.VTEPMAC != nil {
		if err := DelFDB(h, dev, p.VTEPMAC, p.Underlay); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// DelFDB removes dev's FDB entry for mac toward underlay.
func DelFDB(h *netlink.Handle, dev netlink.Link, mac net.HardwareAddr, underlay net.IP) error {
	fdb := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF,
		IP: underlay, HardwareAddr: mac}
	if err := h.NeighDel(fdb); err != nil && !IsNotFound(err) {
		return fmt.Errorf("fdb %s dev %s: %w", mac, dev.Attrs().Name, err)
	}
	return nil
}

// Entries is what a VXLAN device holds: routes (by destination), permanent
// neighbours (by IP) and FDB entries (by MAC), for reconciling against the
// peers that should be there.
type Entries struct {
	Routes []netlink.Route
	Neighs []netlink.Neigh
	FDB    []netlink.Neigh
}

// ListEntries returns dev's IPv4 routes, IPv4 neighbours and FDB entries
// that carry a destination (the ones SetPeer makes).
func ListEntries(h *netlink.Handle, dev netlink.Link) (*Entries, error) {
	e := &Entries{}
	var err error
	if e.Routes, err = h.RouteList(dev, unix.AF_INET); err != nil {
		return nil, fmt.Errorf("routes of %s: %w", dev.Attrs().Name, err)
	}
	if e.Neighs, err = h.NeighList(dev.Attrs().Index, unix.AF_INET); err != nil {
		return nil, fmt.Errorf("neighbours of %s: %w", dev.Attrs().Name, err)
	}
	fdb, err := h.NeighList(dev.Attrs().Index, unix.AF_BRIDGE)
	if err != nil {
		return nil, fmt.Errorf("fdb of %s: %w", dev.Attrs().Name, err)
	}
	for _, n := range fdb {
		if n.IP != nil && !n.IP.IsUnspecified() {
			e.FDB = append(e.FDB, n)
		}
	}
	return e, nil
}

// LinkAddr4 returns the first IPv4 address of l.
func LinkAddr4(h *netlink.Handle, l netlink.Link) (net.IP, error) {
	addrs, err := h.AddrList(l, unix.AF_INET)
	if err != nil {
		return nil, fmt.Errorf("addresses of %s: %w", l.Attrs().Name, err)
	}
	for _, a := range addrs {
		if a.IP.IsGlobalUnicast() {
			return a.IP, nil
		}
	}
	return nil, fmt.Errorf("%s has no IPv4 address", l.Attrs().Name)
}

// LinkByAddr returns the link holding ip.
func LinkByAddr(h *netlink.Handle, ip net.IP) (netlink.Link, error) {
	addrs, err := h.AddrList(nil, family(ip))
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IP.Equal(ip) {
			return h.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("no interface has address %s", ip)
}
