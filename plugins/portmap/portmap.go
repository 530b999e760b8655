package main

import (
	"fmt"
	"net"

	"github.com/containernetworking/cni/pkg/skel"
	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"

	"github.com/berthnet/berth/internal/crashpoint"
	"github.com/berthnet/berth/internal/steptrace"
	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
	"github.com/berthnet/berth/pkg/link"
)

func portMapOf(conf *NetConf, args *skel.CmdArgs, maps []firewall.PortMapping, prev *current.Result) firewall.PortMap {
	p := firewall.PortMap{
		Network: conf.Name, ContainerID: args.ContainerID, IfName: args.IfName,
		Mappings: maps, SNAT: *conf.SNAT, MasqAll: conf.MasqAll,
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
	tr := steptrace.Start(plugin + " ADD")
	defer tr.Done()
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	maps := conf.mappings
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
	tr.Mark("conf")
	p := portMapOf(conf, args, maps, prev)
	if len(p.ContainerIPs) == 0 {
		return cni.Errorf(cni.CodeInvalidConfig, "%s: prevResult has no IP address to map ports to", plugin)
	}
	// Reaching 127.0.0.1:<hostPort> DNATs a packet with a loopback source
	// out of the host interface towards the container; the kernel drops
	// that unless route_localnet is on for it. A route look-up and a
	// sysctl (~0.3 ms): done while the ports are chosen and published, and
	// waited for before anything is reported.
	localnet := make(chan error, 1)
	if p.SNAT {
		ips := p.ContainerIPs
		go func() { localnet <- enableLocalnet(ips) }()
	} else {
		localnet <- nil
	}
	localnetWaited := false
	waitLocalnet := func() error {
		if localnetWaited {
			return nil
		}
		localnetWaited = true
		if err := <-localnet; err != nil {
			return cni.Wrap(cni.CodeKernel, err, "%s: localhost access", plugin)
		}
		return nil
	}
	// Every return waits: nothing of this ADD may run after it returns.
	defer func() { _ = waitLocalnet() }()
	committed := false
	if hasDynamic(maps) {
		// hostPort 0: choose and record under the host's lock. The
		// state file is the reservation every later choice skips, so
		// the publish below needs no lock (a static mapping racing for
		// the port is refused by the kernel, as between static ones).
		path, err := statePath(conf, args)
		if err != nil {
			return err
		}
		unlock, err := lockPorts(conf.DataDir)
		if err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: port lock", plugin)
		}
		locked := true
		defer func() {
			if locked {
				unlock()
			}
		}()
		st, err := readState(path)
		if err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: chosen ports", plugin)
		}
		var nst *portState
		if maps, nst, err = choose(conf, maps, st); err != nil {
			return cni.Wrap(cni.CodeKernel, err, "%s: choosing host ports", plugin)
		}
		p.Mappings = maps
		if err := writeState(path, nst); err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: recording chosen ports", plugin)
		}
		unlock()
		locked = false
		defer func() {
			if !committed {
				cni.Undone(plugin, "forgetting chosen ports", removeState(path))
			}
		}()
	}
	if err := pm.AddPorts(p); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: publishing %s", plugin, firewall.MappingsString(maps))
	}
	tr.Mark("ports")
	crashpoint.Hit("portmap.add.ports")
	defer func() {
		if !committed {
			cni.Undone(plugin, "removing "+firewall.MappingsString(maps), pm.DelPorts(p))
		}
	}()
	if err := firewall.FlushUDPConntrack(p); err != nil {
		return cni.Wrap(cni.CodeKernel, err, plugin)
	}
	tr.Mark("conntrack")
	if err := waitLocalnet(); err != nil {
		return err
	}
	tr.Mark("localnet-wait")
	if err := cni.Print(prev, conf.CNIVersion); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, plugin)
	}
	committed = true
	return nil
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
		dev, err := netlink.LinkByIndex(routes[0].LinkIndex)
		if err != nil {
			return fmt.Errorf("link %d (route to %s): %w", routes[0].LinkIndex, ipn.IP, err)
		}
		// Slashes: a bridge name may have a dot.
		if err := link.Sysctl("net/ipv4/conf/"+dev.Attrs().Name+"/route_localnet", "1"); err != nil {
			return err
		}
	}
	return nil
}

func cmdDel(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	maps := conf.mappings
	pm, err := firewall.NewPortMapper(conf.Backend)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, plugin)
	}
	// prevResult is optional on DEL: without it the entries are found by
	// (container ID, ifname).
	prev, _ := cni.PrevResult(plugin, &conf.NetConf)
	path := ""
	if hasDynamic(maps) {
		// The chosen ports make the fast path possible; without the file
		// (or with a bad key, which no ADD accepted) the tag finds them.
		if path, err = statePath(conf, args); err == nil {
			st, _ := readState(path)
			maps, _ = resolve(maps, st)
		}
		maps = known(maps)
	}
	crashpoint.Hit("portmap.del")
	if err := pm.DelPorts(portMapOf(conf, args, maps, prev)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: removing port mappings", plugin)
	}
	if path != "" {
		if err := removeState(path); err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: releasing chosen ports", plugin)
		}
	}
	return nil
}

func cmdCheck(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	maps := conf.mappings
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
	if hasDynamic(maps) {
		path, err := statePath(conf, args)
		if err != nil {
			return err
		}
		st, err := readState(path)
		if err != nil {
			return cni.Wrap(cni.CodeIOFailure, err, "%s: chosen ports", plugin)
		}
		var all bool
		if maps, all = resolve(maps, st); !all {
			return cni.Errorf(cni.CodeKernel, "%s: no host port recorded for a hostPort 0 mapping (%s)", plugin, path)
		}
	}
	if err := pm.CheckPorts(portMapOf(conf, args, maps, prev)); err != nil {
		return cni.Wrap(cni.CodeKernel, err, plugin)
	}
	return nil
}

func cmdGC(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
	if err != nil {
		return err
	}
	pm, err := firewall.NewPortMapper(conf.Backend)
	if err != nil {
		return cni.Wrap(cni.CodeInvalidConfig, err, plugin)
	}
	valid := cni.ValidSet(conf.ValidAttachments)
	if err := pm.GCPorts(conf.Name, valid); err != nil {
		return cni.Wrap(cni.CodeKernel, err, "%s: GC", plugin)
	}
	if err := gcState(conf, valid); err != nil {
		return cni.Wrap(cni.CodeIOFailure, err, "%s: GC of chosen ports", plugin)
	}
	return nil
}

// cmdStatus reports whether the backend can be driven.
func cmdStatus(args *skel.CmdArgs) error {
	conf, err := loadConf(args.StdinData)
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
