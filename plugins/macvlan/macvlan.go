package main

import (
	"errors"
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/crashpoint"
	"github.com/berthnet/berth/pkg/addtx"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/ipam"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/linkref"
	"github.com/berthnet/berth/pkg/registry"
)

// ipamFor is the network's IPAM for one command: host-local in-process,
// anything else (or execIPAM) by exec.
func ipamFor(conf *NetConf, args *skel.CmdArgs) ipam.Driver {
	return ipam.Driver{Plugin: plugin, Type: conf.IPAM.Type, Exec: conf.ExecIPAM, Args: args, Valid: conf.ValidAttachments}
}

func userOf(conf *NetConf, args *skel.CmdArgs) linkref.User {
	return linkref.User{Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName}
}

// Crash points (tests, -tags crashpoint): right after a VLAN
// sub-interface or a host-access shim is created.
const (
	crashAfterVlan = "macvlan-after-vlan-create"
	crashAfterShim = "macvlan-after-shim-create"
)

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_CONTAINERID: %v", plugin, err)
	}
	tx, err := addtx.Begin(plugin, args)
	if err != nil {
		return err
	}
	defer tx.End()
	host, cont := tx.Host, tx.Cont
	// IPAM runs in the background, overlapping the netlink work.
	tx.StartIPAM(ipamFor(conf, args))

	masterNS := host
	if conf.LinkInContainer {
		masterNS = cont.Handle
	}
	store := linkref.Store{Dir: conf.DataDir}
	user := userOf(conf, args)
	master, err := resolveMaster(conf, masterNS, store, user, tx.UndoList())
	if err != nil {
		return err
	}

	m := link.Macvlan{
		Name: args.IfName, Parent: master, Mode: conf.mode, MTU: conf.MTU, MAC: conf.mac,
		NS: cont, Alias: ownerAlias(conf.Name, args.ContainerID, args.IfName), BCQueueLen: conf.BcQueueLen,
	}
	mkIn := host
	if conf.LinkInContainer {
		// The master is in the container: the child is made beside it.
		m.NS, mkIn = nil, cont.Handle
	}
	contLink, err := link.AddMacvlan(mkIn, m)
	if err != nil {
		if _, lerr := cont.Handle.LinkByName(args.IfName); lerr == nil {
			tx.MarkLiveTwin()
			return addtx.Conflict(plugin, args)
		}
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	tx.Undo(func() { _ = link.DelLink(cont.Handle, args.IfName) })
	ipamRes, err := tx.WaitIPAM()
	if err != nil {
		return err
	}
	result := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: ipamRes.IPs, Routes: ipamRes.Routes, DNS: ipamRes.DNS}
	if result.DNS.IsEmpty() {
		result.DNS = conf.DNS
	}
	if conf.IPAM.Type != "" && len(result.IPs) == 0 {
		return cni.Errorf(cni.CodeDelegate, "%s: ipam %s returned no address", plugin, conf.IPAM.Type)
	}
	if err := link.ConfigureIface(cont, args.IfName, result.IPs, result.Routes); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: configure %s: %v", plugin, args.IfName, err)
	}

	if conf.HostAccess && !conf.LinkInContainer {
		if err := addHostAccess(host, store, user, master, result.IPs, tx.UndoList()); err != nil {
			return err
		}
	}

	result.Interfaces = []*current.Interface{{Name: args.IfName, Mac: contLink.Attrs().HardwareAddr.String(), Sandbox: args.Netns}}
	for _, ipc := range result.IPs {
		ipc.Interface = current.Int(0)
	}
	if err := registry.RecordAttachment(conf.AttachmentsDir, conf.Name, args, result); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: recording the attachment", plugin)
	}
	tx.Commit()
	return cni.Print(result, conf.CNIVersion)
}

// resolveMaster finds the link the containers' macvlans hang off: master,
// the interface of the default route when master is not set, or the VLAN
// sub-interface <parent>.<vid>, made now (and its use recorded) when it
// does not exist. Errors are code 7 naming the field.
func resolveMaster(conf *NetConf, h *netlink.Handle, store linkref.Store, user linkref.User, undo *[]func()) (netlink.Link, error) {
	if conf.Master == "" {
		l, err := link.DefaultRouteLink(h)
		if errors.Is(err, link.ErrNoDefaultRoute) {
			return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: master: not set, and the namespace has no default route (IPv4 or IPv6) to take it from", plugin)
		}
		if err != nil {
			return nil, cni.Errorf(cni.CodeKernel, "%s: master: %v", plugin, err)
		}
		conf.Master = l.Attrs().Name
		return checkMaster(conf, l)
	}
	if conf.vlanParent != "" {
		// Also when the sub-interface exists: its users are counted
		// whoever made it, and only berth's is ever removed.
		return ensureVlan(conf, h, store, user, undo)
	}
	l, err := h.LinkByName(conf.Master)
	if link.IsNotFound(err) {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: master %s: no such interface", plugin, conf.Master)
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeKernel, "%s: master %s: %v", plugin, conf.Master, err)
	}
	return checkMaster(conf, l)
}

// checkMaster refuses a master that is itself a macvlan, and an MTU above
// the master's.
func checkMaster(conf *NetConf, l netlink.Link) (netlink.Link, error) {
	if link.IsMacvlan(l) {
		return nil, cni.InvalidField(plugin, "master", conf.Master, fmt.Sprintf("is itself a %s: use its parent", l.Type()))
	}
	if conf.MTU > l.Attrs().MTU {
		return nil, cni.InvalidField(plugin, "mtu", conf.MTU, fmt.Sprintf("above the MTU %d of master %s", l.Attrs().MTU, l.Attrs().Name))
	}
	return l, nil
}

// ensureVlan records user on the sub-interface conf.Master and makes it on
// its parent if it is missing, all under the state lock; the undo drops
// the user and the sub-interface with its last user.
func ensureVlan(conf *NetConf, h *netlink.Handle, store linkref.Store, user linkref.User, undo *[]func()) (netlink.Link, error) {
	locked, err := store.Lock()
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	defer locked.Unlock()
	l, err := adopt(h, locked, conf.Master, vlanAlias)
	if err != nil {
		return nil, err
	}
	var parent netlink.Link
	if l == nil {
		if parent, err = vlanParent(conf, h); err != nil {
			return nil, err
		}
	}
	// Intent first: a crash from here on leaves a user GC can drop.
	if err := locked.Add(conf.Master, user, l == nil); err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	*undo = append(*undo, func() { _ = release(h, store, user) })
	if l == nil {
		l, err = link.AddVlan(h, link.Vlan{Name: conf.Master, Parent: parent, ID: conf.vlanID, MTU: conf.MTU, Alias: vlanAlias})
		if errors.Is(err, link.ErrNoVlanSupport) {
			return nil, cni.Errorf(cni.CodeKernel, "%s: master %s: %v", plugin, conf.Master, err)
		}
		if err != nil {
			return nil, cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
		crashpoint.Hit(crashAfterVlan)
		if err := locked.Settle(conf.Master); err != nil {
			return nil, cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
		}
	}
	return checkMaster(conf, l)
}

// adopt returns the shared link name (nil when missing). A link whose
// creator died between creating it and naming its owner (Pending, no
// alias) gets its alias now.
func adopt(h *netlink.Handle, locked *linkref.Locked, name, alias string) (netlink.Link, error) {
	l, err := h.LinkByName(name)
	if link.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeKernel, "%s: %s: %v", plugin, name, err)
	}
	pending, err := locked.Pending(name)
	if err != nil {
		return nil, cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	if pending && l.Attrs().Alias == "" {
		if err := link.SetAlias(h, l, alias); err != nil {
			return nil, cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
	}
	if pending {
		if err := locked.Settle(name); err != nil {
			return nil, cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
		}
	}
	return l, nil
}

// vlanParent checks what a missing sub-interface would be made from: the
// VLAN id, and the parent (present, not a macvlan, MTU not below mtu).
func vlanParent(conf *NetConf, h *netlink.Handle) (netlink.Link, error) {
	if conf.vlanID < 1 || conf.vlanID > 4094 {
		return nil, cni.InvalidField(plugin, conf.vlanField, conf.Master, fmt.Sprintf("VLAN id %d: must be between 1 and 4094", conf.vlanID))
	}
	parent, err := h.LinkByName(conf.vlanParent)
	if link.IsNotFound(err) {
		return nil, cni.Errorf(cni.CodeInvalidConfig, "%s: master %s: no such interface, nor its parent %s to make it on", plugin, conf.Master, conf.vlanParent)
	}
	if err != nil {
		return nil, cni.Errorf(cni.CodeKernel, "%s: master %s: parent %s: %v", plugin, conf.Master, conf.vlanParent, err)
	}
	if link.IsMacvlan(parent) {
		return nil, cni.InvalidField(plugin, "master", conf.Master, fmt.Sprintf("parent %s is itself a %s: use a physical interface", conf.vlanParent, parent.Type()))
	}
	if conf.MTU > parent.Attrs().MTU {
		return nil, cni.InvalidField(plugin, "mtu", conf.MTU, fmt.Sprintf("above the MTU %d of %s, the parent of master %s", parent.Attrs().MTU, conf.vlanParent, conf.Master))
	}
	return parent, nil
}

// release drops user from the shared links it used and deletes those left
// without a user that berth made. Errors are returned for DEL; an undo
// ignores them.
func release(h *netlink.Handle, store linkref.Store, user linkref.User) error {
	locked, err := store.Lock()
	if err != nil {
		return err
	}
	defer locked.Unlock()
	unused, err := locked.Release(user)
	if err != nil {
		return err
	}
	return dropUnused(h, locked, unused)
}

// dropUnused deletes the shared links without users that carry berth's
// alias and forgets them; others (made by an admin) are only forgotten.
func dropUnused(h *netlink.Handle, locked *linkref.Locked, names []string) error {
	for _, name := range names {
		owners := []string{vlanAlias, shimAlias}
		if pending, err := locked.Pending(name); err != nil {
			return err
		} else if pending {
			// Its creator died before naming the owner.
			owners = append(owners, "")
		}
		if _, err := link.DelOwned(h, name, owners...); err != nil {
			return err
		}
		if err := locked.Forget(name); err != nil {
			return err
		}
	}
	return nil
}

// addHostAccess records user on the parent's shim, makes the shim if it is
// missing, and routes the container's addresses through it.
func addHostAccess(h *netlink.Handle, store linkref.Store, user linkref.User, master netlink.Link, ips []*current.IPConfig, undo *[]func()) error {
	name := shimName(master.Attrs().Name)
	locked, err := store.Lock()
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	defer locked.Unlock()
	shim, err := adopt(h, locked, name, shimAlias)
	if err != nil {
		return err
	}
	for _, ipc := range ips {
		user.Addrs = append(user.Addrs, ipc.Address.IP.String())
	}
	if err := locked.Add(name, user, shim == nil); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	*undo = append(*undo, func() { _ = release(h, store, user) })
	if shim == nil {
		shim, err = link.AddMacvlan(h, link.Macvlan{Name: name, Parent: master, Mode: netlink.MACVLAN_MODE_BRIDGE, Alias: shimAlias, Up: true})
		if err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: hostAccess shim: %v", plugin, err)
		}
		crashpoint.Hit(crashAfterShim)
		if err := locked.Settle(name); err != nil {
			return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
		}
	}
	if shim.Attrs().Alias != shimAlias {
		return cni.Errorf(cni.CodeConflict, "%s: hostAccess shim %s: the name is taken by a link berth did not make", plugin, name)
	}
	for _, ipc := range ips {
		dst := hostRoute(ipc.Address.IP)
		if err := link.AddRoute(h, shim, dst, nil, 0); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: hostAccess: %v", plugin, err)
		}
		*undo = append(*undo, func() { _ = h.RouteDel(&netlink.Route{LinkIndex: shim.Attrs().Index, Dst: dst}) })
	}
	return nil
}

func hostRoute(ip net.IP) *net.IPNet {
	bits := 128
	if link.IsV4(ip) {
		ip, bits = ip.To4(), 32
	}
	return &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)}
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData, args.Args)
	if err != nil {
		return err
	}
	prev, err := cni.PrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	// IPAM (in-process or a process start) runs alongside the teardown;
	// every step is idempotent, so a DEL failing half way is retried.
	ipamDone := make(chan error, 1)
	go func() { ipamDone <- ipamFor(conf, args).Del() }()
	tearErr := teardown(conf, args, prev)
	if err := <-ipamDone; err != nil && tearErr == nil {
		return err
	}
	if tearErr != nil {
		return tearErr
	}
	if err := registry.ForgetAttachment(conf.AttachmentsDir, conf.Name, args); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: forgetting the attachment", plugin)
	}
	return nil
}

// teardown deletes the container's macvlan (if it is this attachment's),
// its host routes on the shim, and its use of shared links.
func teardown(conf *NetConf, args *skel.CmdArgs, prev *current.Result) error {
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: netlink: %v", plugin, err)
	}
	defer host.Close()
	var ips []net.IP
	if prev != nil {
		for _, ipc := range prev.IPs {
			ips = append(ips, ipc.Address.IP)
		}
	}
	if args.Netns != "" {
		cont, err := link.OpenNS(args.Netns)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// The namespace is gone, and its macvlan with it.
		case err != nil:
			return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
		default:
			defer cont.Close()
			if ips == nil {
				addrs, _ := link.IfaceAddrs(cont, args.IfName)
				for _, a := range addrs {
					ips = append(ips, a.IP)
				}
			}
			if err := delContainerLink(cont, conf, args); err != nil {
				return err
			}
		}
	}
	if conf.HostAccess {
		if err := delHostRoutes(host, ips, ""); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: hostAccess: %v", plugin, err)
		}
	}
	if conf.vlanParent == "" && !conf.HostAccess {
		// Nothing shared was recorded for this network (GC covers a
		// config changed since ADD).
		return nil
	}
	if err := release(host, linkref.Store{Dir: conf.DataDir}, userOf(conf, args)); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err)
	}
	return nil
}

// delContainerLink deletes the container's interface if it is this
// attachment's macvlan: berth's alias names it, or it is a macvlan without
// an alias (made by the reference plugin before berth was swapped in).
func delContainerLink(cont *link.NS, conf *NetConf, args *skel.CmdArgs) error {
	l, err := cont.Handle.LinkByName(args.IfName)
	if link.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: look up %s: %v", plugin, args.IfName, err)
	}
	alias := l.Attrs().Alias
	if alias != ownerAlias(conf.Name, args.ContainerID, args.IfName) && (alias != "" || !link.IsMacvlan(l)) {
		return nil
	}
	if err := cont.Handle.LinkDel(l); err != nil && !link.IsNotFound(err) {
		return cni.Errorf(cni.CodeKernel, "%s: delete %s: %v", plugin, args.IfName, err)
	}
	return nil
}

// delHostRoutes removes the host routes to ips through the shims (only
// through the one named when only is not empty).
func delHostRoutes(h *netlink.Handle, ips []net.IP, only string) error {
	if len(ips) == 0 {
		return nil
	}
	links, err := link.LinkList(h)
	if err != nil {
		return fmt.Errorf("list links: %w", err)
	}
	for _, l := range links {
		if l.Attrs().Alias != shimAlias || (only != "" && l.Attrs().Name != only) {
			continue
		}
		routes, err := link.RouteList(h, l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("routes of %s: %w", l.Attrs().Name, err)
		}
		for _, r := range routes {
			for _, ip := range ips {
				if r.Dst != nil && r.Dst.String() == hostRoute(ip).String() {
					if err := h.RouteDel(&r); err != nil && !link.IsNotFound(err) {
						return fmt.Errorf("delete route %s dev %s: %w", r.Dst, l.Attrs().Name, err)
					}
				}
			}
		}
	}
	return nil
}
