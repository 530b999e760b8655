package main

import (
	"errors"
	"net"
	"os"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/berthnet/berth/internal/crashpoint"
	"github.com/berthnet/berth/internal/steptrace"
	"github.com/berthnet/berth/pkg/addtx"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/link"
	"github.com/berthnet/berth/pkg/registry"
)

func cmdAdd(args *skel.CmdArgs) error {
	tr := steptrace.Start(plugin + " ADD")
	defer tr.Done()
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	if err := cni.SafeContainerID(args.ContainerID); err != nil {
		return cni.Errorf(cni.CodeInvalidEnv, "%s: CNI_CONTAINERID: %v", plugin, err)
	}
	// A bad ipam section must not leave a bridge behind.
	if err := ipamFor(conf, args).Validate(); err != nil {
		return err
	}

	tr.Mark("conf")
	tx, err := addtx.Begin(plugin, args)
	if err != nil {
		return err
	}
	defer tx.End()
	host, cont := tx.Host, tx.Cont
	tr.Mark("handles")
	// IPAM runs in the background, overlapping the netlink work on the
	// bridge and veth instead of preceding it.
	tx.StartIPAM(ipamFor(conf, args))

	br, err := link.EnsureBridge(host, conf.BrName, conf.MTU, conf.PromiscMode)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	tr.Mark("bridge")

	veth := link.Veth{Master: br, MTU: conf.MTU, PeerName: args.IfName, PeerMAC: conf.mac, PeerNS: cont, HostUp: true}
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
	crashpoint.Hit("bridge.add.veth")
	if conf.HairpinMode {
		if err := host.LinkSetHairpin(hostVeth, true); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: hairpin on %s: %v", plugin, hostName, err)
		}
	}

	tr.Mark("veth")
	ipam, err := tx.WaitIPAM()
	if err != nil {
		return err
	}
	tr.Mark("ipam-wait")
	crashpoint.Hit("bridge.add.ipam")
	result := &current.Result{CNIVersion: current.ImplementedSpecVersion, IPs: ipam.IPs, Routes: ipam.Routes, DNS: ipam.DNS}
	if result.DNS.IsEmpty() {
		result.DNS = conf.DNS
	}
	if conf.IsDefaultGW {
		result.Routes = append(result.Routes, defaultRoutes(result.IPs)...)
	}

	if conf.IsGW {
		if err := setupGateway(host, br, result.IPs, conf.ForceAddress); err != nil {
			return err
		}
	}

	tr.Mark("gateway")
	contLink, err := cont.Handle.LinkByName(args.IfName)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: look up %s in container: %v", plugin, args.IfName, err)
	}
	if conf.MacFromIP && conf.mac == nil {
		if mac := dockerMAC(result.IPs); mac != nil {
			if err := cont.Handle.LinkSetHardwareAddr(contLink, mac); err != nil {
				return cni.Errorf(cni.CodeKernel, "%s: set MAC %s: %v", plugin, mac, err)
			}
			contLink.Attrs().HardwareAddr = mac
		}
	}
	if err := link.ConfigureIface(cont, args.IfName, result.IPs, result.Routes); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: configure %s: %v", plugin, args.IfName, err)
	}

	tr.Mark("container")
	if conf.IPMasq && len(result.IPs) > 0 {
		m := masqFor(conf, args, result.IPs)
		fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
		if err != nil {
			return err
		}
		if err := fw.AddMasq(m); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: ipMasq: %v", plugin, err)
		}
		tx.Undo(func() { cni.Undone(plugin, "removing masquerade", fw.DelMasq(m)) })
		crashpoint.Hit("bridge.add.masq")
	}
	tr.Mark("masq")

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
	tx.Undo(func() { _ = registry.ForgetAttachment(conf.AttachmentsDir, conf.Name, args) })
	tr.Mark("record")
	tx.Commit()
	return cni.Print(result, conf.CNIVersion)
}

// setupGateway puts each IP config's gateway on the bridge (with the
// subnet's prefix length) and turns on forwarding for its family.
func setupGateway(h *netlink.Handle, br netlink.Link, ips []*current.IPConfig, force bool) error {
	v4, v6 := false, false
	for _, ipc := range ips {
		if ipc.Gateway == nil {
			continue
		}
		gw := &net.IPNet{IP: ipc.Gateway, Mask: ipc.Address.Mask}
		if err := link.EnsureGatewayAddr(h, br, gw, force); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
		if link.IsV4(ipc.Gateway) {
			v4 = true
		} else {
			v6 = true
		}
	}
	if v4 {
		if err := link.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
	}
	if v6 {
		if err := link.Sysctl("net.ipv6.conf.all.forwarding", "1"); err != nil {
			return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
		}
	}
	return nil
}

// defaultRoutes are the isDefaultGateway routes: 0.0.0.0/0 and ::/0 via the
// first gateway of each family.
func defaultRoutes(ips []*current.IPConfig) []*types.Route {
	var out []*types.Route
	seen4, seen6 := false, false
	for _, ipc := range ips {
		if ipc.Gateway == nil {
			continue
		}
		if link.IsV4(ipc.Gateway) && !seen4 {
			seen4 = true
			out = append(out, &types.Route{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: ipc.Gateway})
		} else if !link.IsV4(ipc.Gateway) && !seen6 {
			seen6 = true
			out = append(out, &types.Route{Dst: net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}, GW: ipc.Gateway})
		}
	}
	return out
}

func dockerMAC(ips []*current.IPConfig) net.HardwareAddr {
	for _, ipc := range ips {
		if link.IsV4(ipc.Address.IP) {
			return macFromIP(ipc.Address.IP)
		}
	}
	return nil
}

func masqFor(conf *NetConf, args *skel.CmdArgs, ips []*current.IPConfig) firewall.Masq {
	m := firewall.Masq{Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName}
	for _, ipc := range ips {
		ipn := ipc.Address
		m.IPs = append(m.IPs, &ipn)
	}
	return m
}

func cmdDel(args *skel.CmdArgs) error {
	tr := steptrace.Start(plugin + " DEL")
	defer tr.Done()
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := cni.PrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	tr.Mark("conf")

	// The attachment's registry entry goes alongside the teardown.
	forgetDone := make(chan error, 1)
	go func() {
		start := time.Now()
		forgetDone <- registry.ForgetAttachment(conf.AttachmentsDir, conf.Name, args)
		tr.Span("record", time.Since(start))
	}()
	tearErr := teardown(tr, conf, args, prev, ipamFor(conf, args).Del)
	crashpoint.Hit("bridge.del.teardown")
	if err := <-forgetDone; err != nil && tearErr == nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: forgetting the attachment", plugin)
	}
	return tearErr
}

// teardown removes the veth pair and the masquerade rules of an attachment,
// whatever is left of them, and then releases its addresses with release.
// Every step is idempotent, so a DEL that fails half way is simply retried
// by the runtime.
func teardown(tr *steptrace.Trace, conf *NetConf, args *skel.CmdArgs, prev *current.Result, release func() error) error {
	var ips []*net.IPNet
	if prev != nil {
		for _, ipc := range prev.IPs {
			ipn := ipc.Address
			ips = append(ips, &ipn)
		}
	}
	host, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: netlink: %v", plugin, err)
	}
	defer host.Close()
	var cont *link.NS
	if args.Netns != "" {
		cont, err = link.OpenNS(args.Netns)
		switch {
		case errors.Is(err, os.ErrNotExist):
			// The namespace is gone and its end of the veth with it.
			cont = nil
		case err != nil:
			return cni.Errorf(cni.CodeInvalidNetNS, "%s: CNI_NETNS: %v", plugin, err)
		default:
			defer cont.Close()
			if ips == nil {
				// No prevResult: the interface's addresses tell
				// masquerade teardown what to remove.
				ips, _ = link.IfaceAddrs(cont, args.IfName)
			}
		}
	}

	// Unregistering a veth waits out an RCU grace period in the kernel
	// (~15-20 ms here, most of a DEL); it goes first, and alone: its
	// rcu_barrier waits for every RCU callback queued before it, so the
	// masquerade's nftables deletion running alongside (as it once did)
	// made the veth's deletion wait for that transaction's callbacks too,
	// and the DEL was slower (bridge DEL 32-44 against 24-36 ms, same
	// runs). Then the rules, and then the addresses. Not before: an
	// address released first can be handed to a new container whose
	// masquerade element (same key) this DEL could still be removing.
	tr.Mark("netns")
	linkErr := delVeth(host, cont, args)
	tr.Mark("veth")
	err = delMasq(conf, args, ips)
	tr.Mark("masq")
	if err == nil {
		err = release()
		tr.Mark("ipam")
	}
	if err != nil && linkErr == nil {
		return err
	}
	return linkErr
}

// delVeth deletes the pair: the container end when its namespace is still
// there, else the host end found by its candidate names and owner mark,
// which covers a container end that is out of reach (netns unknown, or
// moved).
func delVeth(host *netlink.Handle, cont *link.NS, args *skel.CmdArgs) error {
	var ch *netlink.Handle
	if cont != nil {
		ch = cont.Handle
	}
	if err := link.DelVethPair(host, ch, args.ContainerID, args.IfName); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: %v", plugin, err)
	}
	return nil
}

func delMasq(conf *NetConf, args *skel.CmdArgs, ips []*net.IPNet) error {
	if !conf.IPMasq {
		return nil
	}
	fw, err := firewall.MasqueraderFor(plugin, conf.IPMasqBackend)
	if err != nil {
		return err
	}
	m := firewall.Masq{Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName, IPs: ips}
	if err := fw.DelMasq(m); err != nil {
		return cni.Errorf(cni.CodeKernel, "%s: ipMasq: %v", plugin, err)
	}
	return nil
}
