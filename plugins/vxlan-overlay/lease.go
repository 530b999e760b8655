package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/overlay"
	"github.com/berthnet/berth/pkg/registry"
	"github.com/berthnet/berth/pkg/registry/etcdstore"
)

// claimTimeout bounds the etcd requests of a claim: an ADD that needs
// etcd and cannot reach it fails with code 11 instead of hanging.
const claimTimeout = 5 * time.Second

// underlay finds the tunnel's source: the configured interface or
// address, else the default route's interface.
func underlay(h *netlink.Handle, c *NetConf) (netlink.Link, net.IP, error) {
	if c.Underlay != "" {
		if ip := net.ParseIP(c.Underlay); ip != nil {
			l, err := link.LinkByAddr(h, ip)
			if err != nil {
				return nil, nil, cni.InvalidField(plugin, "underlay", c.Underlay, err.Error())
			}
			return l, ip, nil
		}
		l, err := h.LinkByName(c.Underlay)
		if err != nil {
			return nil, nil, cni.InvalidField(plugin, "underlay", c.Underlay, "no such interface")
		}
		ip, err := link.LinkAddr4(h, l)
		if err != nil {
			return nil, nil, cni.InvalidField(plugin, "underlay", c.Underlay, err.Error())
		}
		return l, ip, nil
	}
	routes, err := h.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, nil, cni.Errorf(cni.CodeKernel, "%s: routes: %v", plugin, err)
	}
	for _, r := range routes {
		if r.Dst == nil || r.Dst.String() == "0.0.0.0/0" {
			l, err := h.LinkByIndex(r.LinkIndex)
			if err != nil {
				break
			}
			ip, err := link.LinkAddr4(h, l)
			if err != nil {
				return nil, nil, cni.InvalidField(plugin, "underlay", `""`, "the default route's interface "+l.Attrs().Name+" has no IPv4 address: "+err.Error())
			}
			return l, ip, nil
		}
	}
	return nil, nil, cni.InvalidField(plugin, "underlay", `""`, "no default route to take the underlay from: set underlay to an interface or address")
}

// ensureVTEP makes the VXLAN device and returns it with this host's
// subnet of the overlay (ensureLease), under the overlay's lease lock: a
// device this call made goes again when the lease cannot be had, so that
// a failed first ADD leaves nothing behind.
func ensureVTEP(h *netlink.Handle, c *NetConf, v link.Vxlan) (*netlink.Vxlan, *overlay.Lease, error) {
	unlock, err := overlay.LockLease(c.leaseFile())
	if err != nil {
		return nil, nil, cni.Errorf(cni.CodeIOFailure, "%s: lease lock: %v", plugin, err)
	}
	defer unlock()
	old, lerr := h.LinkByName(v.Name)
	if ovx, ok := old.(*netlink.Vxlan); ok && lerr == nil && (!ovx.SrcAddr.Equal(v.Local) || ovx.Port != v.Port) {
		// The underlay address moved (or the port changed): the tunnel is
		// made anew from the new address, and the daemon, told by this
		// ADD, publishes the new VTEP and reprograms the peers on it.
		if err := link.DelLink(h, v.Name); err != nil {
			return nil, nil, cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
		lerr = netlink.LinkNotFoundError{}
	}
	made := link.IsNotFound(lerr)
	vx, err := link.EnsureVxlan(h, v)
	if err != nil {
		return nil, nil, cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	l, err := ensureLease(c, vx, v.Local)
	if err != nil {
		if made {
			cni.Undone(plugin, "deleting "+v.Name, link.DelLink(h, v.Name))
		}
		return nil, nil, err
	}
	return vx, l, nil
}

// ensureLease returns this host's subnet of the overlay, with the lease
// lock held. A host that holds one (its lease file) uses it without asking
// etcd; otherwise it claims one, and an etcd that cannot be reached is code
// 11 naming the endpoints.
func ensureLease(c *NetConf, vtep *netlink.Vxlan, ul net.IP) (*overlay.Lease, error) {
	n := c.network()
	var err error
	prev, err := overlay.ReadLease(n.LeaseFile)
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "%s: lease: %v", plugin, err)
	}
	hostID := c.HostID
	if hostID == "" {
		if hostID, err = overlay.HostID(filepath.Join(c.DataDir, "host-id")); err != nil {
			return nil, cni.Errorf(cni.CodeIOFailure, "%s: host id: %v", plugin, err)
		}
	}
	ula, _ := netip.AddrFromSlice(ul.To4())
	rec := overlay.Record{HostID: hostID, Underlay: ula, VTEPMAC: vtep.HardwareAddr.String()}
	held := prev != nil && prev.HostID == hostID && c.subnet.Contains(prev.Subnet.Addr()) && prev.Subnet.Bits() == c.HostSubnetLen
	if held && c.Store.Type == overlay.StoreEtcd && idle(c) {
		// No container of this overlay here: the lease may have run out
		// (the host was down or idle past the TTL) and another host may
		// hold the subnet now. Claim again, preferring it; an etcd that
		// does not answer leaves the local lease in force.
		ctx, cancel := context.WithTimeout(context.Background(), reclaimTimeout)
		l, err := claimEtcd(ctx, c, n, rec, prev.Subnet)
		cancel()
		if err == nil {
			if err := overlay.WriteLease(n.LeaseFile, l); err != nil {
				return nil, cni.Errorf(cni.CodeIOFailure, "%s: lease: %v", plugin, err)
			}
			return l, nil
		}
	}
	if held {
		if prev.Record != rec {
			// The VTEP changed (the device was made anew, the underlay
			// moved): the daemon publishes it; the file follows.
			prev.Record = rec
			if err := overlay.WriteLease(n.LeaseFile, prev); err != nil {
				return nil, cni.Errorf(cni.CodeIOFailure, "%s: lease: %v", plugin, err)
			}
		}
		return prev, nil
	}
	var prefer netip.Prefix
	if prev != nil {
		prefer = prev.Subnet
	}
	var l *overlay.Lease
	switch c.Store.Type {
	case overlay.StoreLocal:
		l = overlay.ClaimLocal(n, prev, rec)
	case overlay.StoreEtcd:
		ctx, cancel := context.WithTimeout(context.Background(), claimTimeout)
		defer cancel()
		l, err = claimEtcd(ctx, c, n, rec, prefer)
		if err != nil {
			var ce *types.Error
			if errors.As(err, &ce) {
				return nil, ce
			}
			if errors.Is(err, overlay.ErrFull) {
				return nil, cni.Errorf(cni.CodeAddressExhausted, "%s: claiming a subnet of %s in etcd at %s: %v", plugin, c.subnet, strings.Join(c.Store.Endpoints, ","), err)
			}
			return nil, cni.Errorf(cni.CodeTryAgain, "%s: claiming a subnet of %s needs etcd at %s, which did not answer: %v (try again later)",
				plugin, c.subnet, strings.Join(c.Store.Endpoints, ","), err)
		}
	}
	if err := overlay.WriteLease(n.LeaseFile, l); err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "%s: lease: %v", plugin, err)
	}
	return l, nil
}

// reclaimTimeout bounds the claim of an idle host that holds a lease: a
// short wait, then the local lease is used.
const reclaimTimeout = 2 * time.Second

// idle: no attachment of c's network is recorded on this host.
func idle(c *NetConf) bool {
	keys, err := overlay.Attachments(c.DataDir, c.Name)
	return err == nil && len(keys) == 0
}

// claimEtcd claims a subnet in the etcd of c's store.
func claimEtcd(ctx context.Context, c *NetConf, n *overlay.Network, rec overlay.Record, prefer netip.Prefix) (*overlay.Lease, error) {
	store, err := etcdstore.OpenConfig(&registry.Config{Backend: registry.BackendEtcd, Endpoints: c.Store.Endpoints, TLS: c.Store.TLS, DialTimeout: claimTimeout})
	if err != nil {
		return nil, cni.InvalidField(plugin, "store", strings.Join(c.Store.Endpoints, ","), err.Error())
	}
	defer store.Close()
	return overlay.Claim(ctx, store.Client(), n, rec, prefer)
}

// underlayMTU is the MTU containers get by default.
func underlayMTU(l netlink.Link) int { return l.Attrs().MTU - vxlanOverhead }
