package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/link"
)

// cmdCheck verifies that what ADD set up is still there: the IPAM
// reservation, the bridge, the host veth on it, the container interface
// with prevResult's addresses and routes, and the masquerade rules.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := cni.NeedPrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	if err := ipamFor(conf, args).Check(prev); err != nil {
		return err
	}
	fail := func(format string, a ...any) error {
		return cni.Errorf(cni.CodeKernel, "%s: check: %s", plugin, fmt.Sprintf(format, a...))
	}

	br, err := netlink.LinkByName(conf.BrName)
	if err != nil {
		return fail("bridge %s: %v", conf.BrName, err)
	}
	if _, ok := br.(*netlink.Bridge); !ok {
		return fail("%s is a %s, not a bridge", conf.BrName, br.Type())
	}
	cont, err := link.OpenNS(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
	}
	defer cont.Close()
	if err := checkContainer(cont, args.IfName, prev); err != nil {
		return fail("%v", err)
	}

	// The host end is found through the container end's peer index, not
	// by name: attachments made by the reference plugin before berth was
	// swapped in have random host names.
	cl, err := cont.Handle.LinkByName(args.IfName)
	if err != nil {
		return fail("interface %s: %v", args.IfName, err)
	}
	hv, err := netlink.LinkByIndex(cl.Attrs().ParentIndex)
	if err != nil {
		return fail("host end of %s (ifindex %d): %v", args.IfName, cl.Attrs().ParentIndex, err)
	}
	if hv.Attrs().MasterIndex != br.Attrs().Index {
		return fail("host veth %s is not attached to %s", hv.Attrs().Name, conf.BrName)
	}

	if conf.IPMasq && len(prev.IPs) > 0 {
		fw, err := firewall.NewMasquerader(conf.IPMasqBackend)
		if err != nil {
			return cni.InvalidField(plugin, "ipMasqBackend", conf.IPMasqBackend, err.Error())
		}
		if err := fw.CheckMasq(masqFor(conf, args, prev.IPs)); err != nil {
			return fail("ipMasq: %v", err)
		}
	}
	return nil
}

// checkContainer compares the container interface with prevResult.
func checkContainer(cont *link.NS, ifName string, prev *current.Result) error {
	l, err := cont.Handle.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("interface %s in %s: %w", ifName, cont.Path, err)
	}
	for _, iface := range prev.Interfaces {
		if iface.Name == ifName && iface.Sandbox != "" && iface.Mac != "" && iface.Mac != l.Attrs().HardwareAddr.String() {
			return fmt.Errorf("%s has MAC %s, prevResult says %s", ifName, l.Attrs().HardwareAddr, iface.Mac)
		}
	}
	addrs, err := link.AddrList(cont.Handle, l, netlink.FAMILY_ALL)
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
	routes, err := link.RouteList(cont.Handle, l, netlink.FAMILY_ALL)
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

// cmdGC releases IPAM reservations and masquerade rules of attachments
// that are not in cni.dev/valid-attachments.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := ipamFor(conf, args).GC(); err != nil {
		return err
	}
	if conf.IPMasq {
		fw, err := firewall.NewMasquerader(conf.IPMasqBackend)
		if err != nil {
			return cni.InvalidField(plugin, "ipMasqBackend", conf.IPMasqBackend, err.Error())
		}
		if err := fw.GCMasq(conf.Name, cni.ValidSet(conf.ValidAttachments)); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: ipMasq GC: %v", plugin, err)
		}
	}
	return nil
}

// cmdStatus is ready when the IPAM plugin is.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	return ipamFor(conf, args).Status()
}
