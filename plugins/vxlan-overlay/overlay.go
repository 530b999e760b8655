package main

import (
	"errors"
	"net"
	"net/netip"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/pkg/addtx"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/ipam"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/overlay"
	"github.com/berthnet/berth/pkg/registry"
)

func ipamFor(c *NetConf, args *skel.CmdArgs, hostSubnet netip.Prefix) ipam.Driver {
	a := *args
	a.StdinData = c.ipamConf(hostSubnet)
	return ipam.Driver{Plugin: plugin, Type: ipam.Plugin, Args: &a, Valid: c.ValidAttachments}
}

// leasedSubnet is the host subnet in the lease file, for commands that
// must not claim (DEL, GC, CHECK); any host subnet when there is none
// (IPAM then only releases by owner).
func leasedSubnet(c *NetConf) netip.Prefix {
	if l, err := overlay.ReadLease(c.leaseFile()); err == nil && l != nil {
		return l.Subnet
	}
	return c.network().HostSubnet(0)
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_CONTAINERID: %v", plugin, err)
	}
	key := registry.EntryName(args.ContainerID, args.IfName)
	tx, err := addtx.Begin(plugin, args)
	if err != nil {
		return err
	}
	defer tx.End()
	host, cont := tx.Host, tx.Cont

	// The VXLAN device and the bridge are the host's for this overlay,
	// shared by its containers: never removed by an ADD's undo (nor by
	// DEL), like bridge's bridge.
	ulLink, ulIP, err := underlay(host, conf)
	if err != nil {
		return err
	}
	mtu := conf.MTU
	if mtu == 0 {
		mtu = underlayMTU(ulLink)
	}
	_, lease, err := ensureVTEP(host, conf, link.Vxlan{Name: conf.device(), VNI: conf.VNI, Port: conf.Port, Local: ulIP, Underlay: ulLink, MTU: mtu})
	if err != nil {
		return err
	}
	br, err := link.EnsureBridge(host, conf.bridge(), mtu, false)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	gw := overlay.IPNet(netip.PrefixFrom(overlay.Gateway(lease.Subnet), lease.Subnet.Bits()))
	if err := link.EnsureGatewayAddr(host, br, gw, true); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	if err := dropOldGateways(host, br, conf, gw); err != nil {
		return err
	}
	if err := isolate(conf); err != nil {
		return err
	}
	if err := link.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}

	tx.StartIPAM(ipamFor(conf, args, lease.Subnet))
	// The host end carries its owner (link.AddOwnedVeth): a link of
	// someone else's under the derived name is never touched.
	veth := link.Veth{Master: br, MTU: mtu, PeerName: args.IfName, PeerNS: cont, HostUp: true}
	hostVeth, err := link.AddOwnedVeth(host, veth, args.ContainerID, args.IfName)
	if errors.Is(err, link.ErrIfaceExists) {
		tx.MarkLiveTwin()
		return addtx.Conflict(plugin, args)
	}
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	hostName := hostVeth.Attrs().Name
	tx.Undo(func() { cni.Undone(plugin, "deleting "+hostName, link.DelLink(host, hostName)) })
	res, err := tx.WaitIPAM()
	if err != nil {
		return err
	}
	result := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: res.IPs, Routes: res.Routes, DNS: res.DNS}
	if result.DNS.IsEmpty() {
		result.DNS = conf.DNS
	}
	if err := link.ConfigureIface(cont, args.IfName, result.IPs, result.Routes); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: configure %s: %v", plugin, args.IfName, err)
	}
	contLink, err := cont.Handle.LinkByName(args.IfName)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: look up %s in container: %v", plugin, args.IfName, err)
	}

	if conf.IPMasq {
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
		}
		m := masqFor(conf, args, result.IPs)
		if err := fw.AddMasq(m); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: ipMasq: %v", plugin, err)
		}
		tx.Undo(func() { cni.Undone(plugin, "removing masquerade", fw.DelMasq(m)) })
	}

	n := conf.network()
	if err := overlay.SaveAttachment(conf.DataDir, n, key); err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: recording the attachment: %v", plugin, err)
	}
	tx.Undo(func() {
		cni.Undone(plugin, "forgetting the attachment", overlay.RemoveAttachment(conf.DataDir, conf.Name, key))
	})
	if conf.Store.Type == overlay.StoreEtcd {
		// The daemon keeps the lease alive and programs the other hosts;
		// a single host (local store) has none, so needs no daemon.
		cl := conf.client()
		if err := cl.Notify(overlay.Request{Op: overlay.OpAdd, Network: *n, Key: key}, true); err != nil {
			return cni.Errorf(cni.CodePluginNotAvailable, "%s: %v", plugin, err)
		}
		tx.Undo(func() {
			cni.Undone(plugin, "telling "+overlay.Binary, cl.Notify(overlay.Request{Op: overlay.OpDel, Network: overlay.Network{Name: conf.Name}, Key: key}, false))
		})
	}

	result.Interfaces = []*current.Interface{
		{Name: br.Attrs().Name, Mac: br.Attrs().HardwareAddr.String()},
		{Name: hostName, Mac: hostVeth.Attrs().HardwareAddr.String()},
		{Name: args.IfName, Mac: contLink.Attrs().HardwareAddr.String(), Sandbox: args.Netns},
	}
	contIdx := 2
	for _, ipc := range result.IPs {
		ipc.Interface = &contIdx
	}
	if err := registry.RecordAttachment(conf.AttachmentsDir, conf.Name, args, result); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: recording the attachment", plugin)
	}
	tx.Commit()
	return cni.Print(result, conf.CNIVersion)
}

// dropOldGateways removes the bridge's addresses in the overlay other than
// gw: the gateway of a subnet this host held before (its lease ran out and
// another host has it now), whose connected route would shadow the route
// to that host.
func dropOldGateways(h *netlink.Handle, br netlink.Link, c *NetConf, gw *net.IPNet) error {
	addrs, err := h.AddrList(br, netlink.FAMILY_V4)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: addresses of %s: %v", plugin, br.Attrs().Name, err)
	}
	overlayNet := overlay.IPNet(c.subnet)
	for i := range addrs {
		a := &addrs[i]
		if a.IP.Equal(gw.IP) || !overlayNet.Contains(a.IP) {
			continue
		}
		if err := h.AddrDel(br, a); err != nil && !link.IsNotFound(err) {
			return cni.Errorf(cni.CodeKernel, "%s: removing old gateway %s from %s: %v", plugin, a.IPNet, br.Attrs().Name, err)
		}
	}
	return nil
}

// isolate keeps other overlays of this host away from this one's bridge
// and VXLAN device; under the overlay's lease lock, so that concurrent
// first ADDs install its rules once.
func isolate(c *NetConf) error {
	unlock, err := overlay.LockLease(c.leaseFile())
	if err != nil {
		return cni.Errorf(cni.CodeIOFailure, "%s: lease lock: %v", plugin, err)
	}
	defer unlock()
	if err := firewall.IsolateOverlay(c.names()); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: isolation: %v", plugin, err)
	}
	return nil
}

// masqFor masquerades what leaves the overlay only: the container's
// address with the whole overlay's mask, so traffic to any host's subnet
// keeps its source address.
func masqFor(c *NetConf, args *skel.CmdArgs, ips []*current.IPConfig) firewall.Masq {
	m := firewall.Masq{Network: c.Name, ContainerID: args.ContainerID, IfName: args.IfName}
	for _, ipc := range ips {
		if ipc.Address.IP.To4() == nil {
			continue
		}
		m.IPs = append(m.IPs, &net.IPNet{IP: ipc.Address.IP, Mask: net.CIDRMask(c.subnet.Bits(), 32)})
	}
	return m
}

// cmdDel removes the attachment without etcd: the veth, the masquerade,
// the reservation, the attachment record, and tells the daemon (which
// exits with the host's last overlay container). Every step is idempotent.
func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := cni.PrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	key := registry.EntryName(args.ContainerID, args.IfName)
	var errs []error
	if err := ipamFor(conf, args, leasedSubnet(conf)).Del(); err != nil {
		errs = append(errs, err)
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: netlink: %v", plugin, err)
	}
	defer host.Close()
	var ips []*current.IPConfig
	if prev != nil {
		ips = prev.IPs
	}
	var contH *netlink.Handle // the container's namespace, if still there
	if args.Netns != "" {
		cont, err := link.OpenNS(args.Netns)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
		default:
			if ips == nil {
				if addrs, _ := link.IfaceAddrs(cont, args.IfName); addrs != nil {
					for _, a := range addrs {
						ips = append(ips, &current.IPConfig{Address: *a})
					}
				}
			}
			defer cont.Close()
			contH = cont.Handle
		}
	}
	if err := link.DelVethPair(host, contH, args.ContainerID, args.IfName); err != nil {
		errs = append(errs, cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err))
	}
	if conf.IPMasq {
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
		}
		if err := fw.DelMasq(masqFor(conf, args, ips)); err != nil {
			errs = append(errs, cni.Errorf(cni.CodeKernel, "%s: ipMasq: %v", plugin, err))
		}
	}
	if err := registry.ForgetAttachment(conf.AttachmentsDir, conf.Name, args); err != nil {
		errs = append(errs, cni.Wrap(cni.CodeIOFailure, err, "%s: forgetting the attachment", plugin))
	}
	if err := overlay.RemoveAttachment(conf.DataDir, conf.Name, key); err != nil {
		errs = append(errs, cni.Errorf(cni.CodeIOFailure, "%s: %v", plugin, err))
	}
	if conf.Store.Type == overlay.StoreEtcd {
		if err := conf.client().Notify(overlay.Request{Op: overlay.OpDel, Network: overlay.Network{Name: conf.Name}, Key: key}, false); err != nil {
			errs = append(errs, cni.Errorf(cni.CodePluginNotAvailable, "%s: %v", plugin, err))
		}
	}
	if len(errs) > 0 {
		return errs[0]
	}
	return nil
}
