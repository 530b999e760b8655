// Command portmap is berth's drop-in for the reference portmap plugin:
// published ports (`docker run -p 8080:80`) through nftables maps (default)
// or iptables, chained after a plugin that gives the container its IPs.
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
	}, cni.Versions, "berth portmap: published ports (reference-compatible)")
}
