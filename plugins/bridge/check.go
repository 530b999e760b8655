package main

import (
	"fmt"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
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
	if err := link.CheckIface(cont, args.IfName, prev); err != nil {
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
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
		}
		if err := fw.CheckMasq(masqFor(conf, args, prev.IPs)); err != nil {
			return fail("ipMasq: %v", err)
		}
	}
	return nil
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
	if err := registry.GCAttachments(conf.AttachmentsDir, conf.Name, cni.ValidSet(conf.ValidAttachments)); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: attachments GC", plugin)
	}
	if conf.IPMasq {
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
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
