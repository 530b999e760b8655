// Command firewall is berth's drop-in for the reference firewall plugin:
// chained after bridge, it accepts the container's forwarded traffic and
// applies the network's ingressPolicy (open, same-bridge, isolated) with
// nftables (default) or iptables.
package main

import (
	"github.com/containernetworking/cni/pkg/skel"

	"github.com/berthnet/berth/pkg/cni"
	"github.com/berthnet/berth/pkg/firewall"
)

func main() {
	// A plugin lives for one command: its netfilter sockets are
	// released by the kernel after it exits, so no close waits here.
	firewall.ReleaseSocketsLate()
	skel.PluginMainFuncs(skel.CNIFuncs{
		Add:    cmdAdd,
		Del:    cmdDel,
		Check:  cmdCheck,
		GC:     cmdGC,
		Status: cmdStatus,
	}, cni.Versions, "berth firewall: forward rules and network isolation (nftables or iptables)")
}
