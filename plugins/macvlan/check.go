package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/linkref"
	"github.com/berthnet/berth/pkg/registry"
)

// cmdCheck verifies that what ADD set up is still there: the IPAM
// reservation, the master (the VLAN sub-interface included), the
// container's macvlan on it with prevResult's addresses and routes, and
// the host-access shim with its routes.
func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, args.Args)
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
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: netlink: %v", plugin, err)
	}
	defer host.Close()
	cont, err := link.OpenNS(args.Netns)
	if err != nil {
		return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
	}
	defer cont.Close()

	masterNS := host
	if conf.LinkInContainer {
		masterNS = cont.Handle
	}
	var master netlink.Link
	if conf.Master == "" {
		master, err = link.DefaultRouteLink(masterNS)
	} else {
		master, err = masterNS.LinkByName(conf.Master)
	}
	if err != nil {
		what := "master " + conf.Master
		if conf.vlanParent != "" {
			what = fmt.Sprintf("VLAN %d sub-interface %s", conf.vlanID, conf.Master)
		}
		return fail("%s: %v", what, err)
	}
	if err := link.CheckIface(cont, args.IfName, prev); err != nil {
		return fail("%v", err)
	}
	l, err := cont.Handle.LinkByName(args.IfName)
	if err != nil {
		return fail("interface %s: %v", args.IfName, err)
	}
	mv, ok := l.(*netlink.Macvlan)
	if !ok {
		return fail("%s is a %s, not a macvlan", args.IfName, l.Type())
	}
	if mv.Mode != conf.mode {
		return fail("%s is in macvlan mode %d, the config says %s", args.IfName, mv.Mode, conf.Mode)
	}
	if l.Attrs().ParentIndex != master.Attrs().Index {
		return fail("%s is not on master %s", args.IfName, master.Attrs().Name)
	}
	if conf.vlanParent != "" {
		if err := checkUser(conf, args); err != nil {
			return fail("%v", err)
		}
	}
	if conf.HostAccess && !conf.LinkInContainer {
		shim, err := host.LinkByName(shimName(master.Attrs().Name))
		if err != nil {
			return fail("hostAccess shim: %v", err)
		}
		for _, ipc := range prev.IPs {
			routes, err := host.RouteGet(ipc.Address.IP)
			if err != nil || len(routes) == 0 || routes[0].LinkIndex != shim.Attrs().Index {
				return fail("hostAccess: no host route to %s through %s", ipc.Address.IP, shim.Attrs().Name)
			}
		}
	}
	return nil
}

// checkUser makes sure the attachment is counted as a user of its
// sub-interface (so no other DEL removes it).
func checkUser(conf *NetConf, args *skel.CmdArgs) error {
	locked, err := linkref.Store{Dir: conf.DataDir}.Lock()
	if err != nil {
		return err
	}
	defer locked.Unlock()
	users, err := locked.Users(conf.Master)
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Is(userOf(conf, args)) {
			return nil
		}
	}
	return fmt.Errorf("%s does not list %s/%s among its users", conf.Master, args.ContainerID, args.IfName)
}

// cmdGC releases IPAM reservations of attachments not in
// cni.dev/valid-attachments, and their use of shared links: a
// sub-interface or shim berth made goes with its last user.
func cmdGC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if err := ipamFor(conf, args).GC(); err != nil {
		return err
	}
	if err := registry.GCAttachments(conf.AttachmentsDir, conf.Name, cni.ValidSet(conf.ValidAttachments)); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: attachments GC", plugin)
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: netlink: %v", plugin, err)
	}
	defer host.Close()
	locked, err := linkref.Store{Dir: conf.DataDir}.Lock()
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	defer locked.Unlock()
	valid := cni.ValidSet(conf.ValidAttachments)
	unused, dropped, err := locked.Prune(conf.Name, func(u linkref.User) bool {
		return valid[cni.Attachment{ContainerID: u.ContainerID, IfName: u.IfName}]
	})
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: GC: %v", plugin, err)
	}
	// Host routes of dropped users through shims that stay (others go
	// with their shim).
	for name, users := range dropped {
		var ips []net.IP
		for _, u := range users {
			for _, a := range u.Addrs {
				if ip := net.ParseIP(a); ip != nil {
					ips = append(ips, ip)
				}
			}
		}
		if err := delHostRoutes(host, ips, name); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: GC: %v", plugin, err)
		}
	}
	if err := dropUnused(host, locked, unused); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: GC: %v", plugin, err)
	}
	return nil
}

// cmdStatus is ready when the IPAM plugin is.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	return ipamFor(conf, args).Status()
}
