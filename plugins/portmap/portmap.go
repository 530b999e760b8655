package main

import (
	"fmt"
	"net"
	"os"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/internal/crashpoint"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

func portMapOf(conf *NetConf, args *skel.CmdArgs, maps []firewall.PortMapping, prev *current.Result) firewall.PortMap {
	p := firewall.PortMap{
		Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName,
		Mappings: maps, SNAT: *conf.SNAT, MasqAll: conf.MasqAll,
		MarkMasqBit: defaultMarkMasqBit,
	}
	if conf.MarkMasqBit != nil {
		p.MarkMasqBit = *conf.MarkMasqBit
	}
	if conf.ExternalSetMarkChain != nil {
		p.ExternalSetMarkChain = *conf.ExternalSetMarkChain
	}
	if conf.ConditionsV4 != nil {
		p.ConditionsV4 = *conf.ConditionsV4
	}
	if conf.ConditionsV6 != nil {
		p.ConditionsV6 = *conf.ConditionsV6
	}
	if prev != nil {
		// The first address of each family, as the reference does.
		var have4, have6 bool
		for _, ipc := range prev.IPs {
			is4 := ipc.Address.IP.To4() != nil
			if (is4 && have4) || (!is4 && have6) {
				continue
			}
			a := ipc.Address
			p.ContainerIPs = append(p.ContainerIPs, &a)
			have4, have6 = have4 || is4, have6 || !is4
		}
	}
	return p
}

func cmdAdd(args *skel.CmdArgs) error {
	conf, maps, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := cni.NeedPrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	if len(maps) == 0 {
		return cni.Print(prev, conf.CNIVersion)
	}
	pm, err := firewall.NewPortMapper(conf.Backend)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, plugin)
	}
	p := portMapOf(conf, args, maps, prev)
	if len(p.ContainerIPs) == 0 {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult has no IP address to map ports to", plugin)
	}
	if p.SNAT {
		// Reaching 127.0.0.1:<hostPort> DNATs a packet with a loopback
		// source out of the host interface towards the container; the
		// kernel drops that unless route_localnet is on for it.
		if err := enableLocalnet(p.ContainerIPs); err != nil {
			return cni.Wrap(cni.CodeKernel, err, "%s: localhost access", plugin)
		}
	}
	if err := pm.AddPorts(p); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: publishing %s", plugin, mappingsString(maps))
	}
	crashpoint.Hit("portmap.add.ports")
	committed := false
	defer func() {
		if !committed {
			_ = pm.DelPorts(p)
		}
	}()
	if err := firewall.FlushUDPConntrack(p); err != nil {
		return cni.Wrap(cni.CodeKernel, err, plugin)
	}
	if err := cni.Print(prev, conf.CNIVersion); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, plugin)
	}
	committed = true
	return nil
}

func mappingsString(ms []firewall.PortMapping) string {
	s := ""
	for i, m := range ms {
		if i > 0 {
			s += ","
		}
		s += m.String()
	}
	return s
}

// enableLocalnet sets route_localnet on the host interface that routes to
// the container's IPv4 address (the bridge). IPv6 has no equivalent: ::1
// cannot be DNATed, as with the reference plugin.
func enableLocalnet(ips []*net.IPNet) error {
	for _, ipn := range ips {
		if ipn.IP.To4() == nil {
			continue
		}
		routes, err := netlink.RouteGet(ipn.IP)
		if err != nil || len(routes) == 0 {
			return fmt.Errorf("route to %s: %w", ipn.IP, err)
		}
		link, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return fmt.Errorf("link %d (route to %s): %w", routes[0].LinkIndex, ipn.IP, err)
		}
		path := fmt.Sprintf("/proc/sys/net/ipv4/conf/%s/route_localnet", link.Attrs().Name)
		if b, err := os.ReadFile(path); err == nil && len(b) > 0 && b[0] == '1' {
			continue
		}
		if err := os.WriteFile(path, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("route_localnet on %s: %w", link.Attrs().Name, err)
		}
	}
	return nil
}

func cmdDel(args *skel.CmdArgs) error {
	conf, maps, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	pm, err := firewall.NewPortMapper(conf.Backend)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, plugin)
	}
	// prevResult is optional on DEL: without it the entries are found by
	// (container ID, ifname).
	prev, _ := cni.PrevResult(plugin, &conf.NetConf)
	crashpoint.Hit("portmap.del")
	if err := pm.DelPorts(portMapOf(conf, args, maps, prev)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: removing port mappings", plugin)
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, maps, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	prev, err := cni.NeedPrevResult(plugin, &conf.NetConf)
	if err != nil {
		return err
	}
	if len(maps) == 0 {
		return nil
	}
	pm, err := firewall.NewPortMapper(conf.Backend)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, plugin)
	}
	if err := pm.CheckPorts(portMapOf(conf, args, maps, prev)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, plugin)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, _, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	pm, err := firewall.NewPortMapper(conf.Backend)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, plugin)
	}
	if err := pm.GCPorts(conf.Name, cni.ValidSet(conf.ValidAttachments)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: GC", plugin)
	}
	return nil
}

// cmdStatus reports whether the backend can be driven.
func cmdStatus(args *skel.CmdArgs) error {
	conf, _, err := parseConfig(args.StdinData)
	if err != nil {
		return err
	}
	if err := firewall.Ready(conf.Backend); err != nil {
		return cni.Errorf(cni.CodePluginNotAvailable, "%s: backend %s not available: %v", plugin, backendName(conf.Backend), err)
	}
	return nil
}

func backendName(b string) string {
	if b == "" {
		return firewall.NFTables
	}
	return b
}
