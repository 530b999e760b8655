package main

import (
	"net"
	"net/netip"
	"slices"
	"sort"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

// targetResult is the result a joiner gets: the target's interfaces,
// addresses, routes and DNS as its attaching plugins recorded them,
// checked against the kernel: an interface must exist in the target's
// namespace (its MAC is read there, as tuning may have changed it), and an
// address is reported only if the interface has it. Interfaces are listed
// with the joiner's netns as their sandbox: that is where the joiner sees
// them.
func targetResult(ref string, own []*registry.Entry, target *link.NS, sandbox string) (*current.Result, error) {
	sort.Slice(own, func(i, j int) bool {
		if own[i].IfName != own[j].IfName {
			return own[i].IfName < own[j].IfName
		}
		return own[i].Network < own[j].Network
	})
	res := &current.Result{CNIVersion: current.ImplementedSpecVersion}
	for _, e := range own {
		l, err := target.Handle.LinkByName(e.IfName)
		if err != nil {
			// Recorded but gone (removed by hand): not part of the
			// stack the joiner gets.
			continue
		}
		addrs, err := link.AddrList(target.Handle, l, netlink.FAMILY_ALL)
		if err != nil {
			return nil, cni.Errorf(cni.CodeKernel, "%s: addresses of %s in %s: %v", plugin, e.IfName, target.Path, err)
		}
		idx := len(res.Interfaces)
		res.Interfaces = append(res.Interfaces, &current.Interface{Name: e.IfName, Mac: l.Attrs().HardwareAddr.String(), Sandbox: sandbox})
		for _, p := range e.IPs {
			if !hasAddr(addrs, p) {
				continue
			}
			ipc := &current.IPConfig{Interface: &idx, Address: net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}}
			for _, g := range e.Gateways {
				if g.Is4() == p.Addr().Is4() {
					ipc.Gateway = g.AsSlice()
					break
				}
			}
			res.IPs = append(res.IPs, ipc)
		}
		for _, r := range e.Routes {
			if !slices.ContainsFunc(res.Routes, func(x *types.Route) bool { return x.String() == r.String() }) {
				res.Routes = append(res.Routes, r)
			}
		}
		if e.ResolvConf != nil {
			mergeDNS(&res.DNS, e.ResolvConf)
		}
	}
	if len(res.Interfaces) == 0 {
		return nil, cni.Errorf(cni.CodeUnknownContainer, "%s: container %q has none of its recorded interfaces left in %s", plugin, ref, target.Path)
	}
	return res, nil
}

func hasAddr(addrs []netlink.Addr, p netip.Prefix) bool {
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP); ok && ip.Unmap() == p.Addr() {
			return true
		}
	}
	return false
}

// mergeDNS adds src's settings to dst without duplicates.
func mergeDNS(dst, src *types.DNS) {
	add := func(list []string, vals []string) []string {
		for _, v := range vals {
			if !slices.Contains(list, v) {
				list = append(list, v)
			}
		}
		return list
	}
	dst.Nameservers = add(dst.Nameservers, src.Nameservers)
	dst.Search = add(dst.Search, src.Search)
	dst.Options = add(dst.Options, src.Options)
	if dst.Domain == "" {
		dst.Domain = src.Domain
	}
}
