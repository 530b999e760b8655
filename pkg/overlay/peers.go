package overlay

// Programming peers into the kernel: the set of remote hosts etcd says
// exist, reconciled against what the VXLAN device holds. Everything on the
// device is ours (berth made the device for this overlay), so an entry
// that no peer accounts for is stale and goes.

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/link"
)

// peerOf turns a lease into the kernel's view of the host holding it.
func peerOf(subnet netip.Prefix, r Record) (link.Peer, bool) {
	mac := r.mac()
	if mac == nil || !r.Underlay.IsValid() {
		return link.Peer{}, false
	}
	return link.Peer{Subnet: IPNet(subnet), Gateway: net.IP(Gateway(subnet).AsSlice()), VTEPMAC: mac, Underlay: net.IP(r.Underlay.AsSlice())}, true
}

// reconcile makes dev hold exactly the entries of peers (remote hosts
// only): SetPeer for each, then removes routes into the overlay, permanent
// neighbours and FDB entries no peer accounts for.
func reconcile(h *netlink.Handle, n *Network, peers map[netip.Prefix]Record) error {
	dev, err := h.LinkByName(n.Device)
	if err != nil {
		return fmt.Errorf("look up %s: %w", n.Device, err)
	}
	wantRoute := map[string]bool{}
	wantNeigh := map[string]bool{}
	wantFDB := map[string]string{} // MAC -> underlay
	var errs []error
	for subnet, r := range peers {
		p, ok := peerOf(subnet, r)
		if !ok {
			continue
		}
		wantRoute[p.Subnet.String()] = true
		wantNeigh[p.Gateway.String()] = true
		wantFDB[p.VTEPMAC.String()] = p.Underlay.String()
		if err := link.SetPeer(h, dev, p); err != nil {
			errs = append(errs, err)
		}
	}
	have, err := link.ListEntries(h, dev)
	if err != nil {
		return err
	}
	overlay := IPNet(n.Subnet)
	for _, r := range have.Routes {
		if r.Dst == nil || !overlay.Contains(r.Dst.IP) || wantRoute[r.Dst.String()] {
			continue
		}
		if err := h.RouteDel(&r); err != nil && !link.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("stale route %s: %w", r.Dst, err))
		}
	}
	for _, nb := range have.Neighs {
		if nb.State&netlink.NUD_PERMANENT == 0 || wantNeigh[nb.IP.String()] {
			continue
		}
		if err := h.NeighDel(&nb); err != nil && !link.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("stale neighbour %s: %w", nb.IP, err))
		}
	}
	for _, f := range have.FDB {
		if ul, ok := wantFDB[f.HardwareAddr.String()]; ok && ul == f.IP.String() {
			continue
		}
		if err := link.DelFDB(h, dev, f.HardwareAddr, f.IP); err != nil {
			errs = append(errs, fmt.Errorf("stale %w", err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("programming peers on %s: %v", n.Device, errs)
	}
	return nil
}
